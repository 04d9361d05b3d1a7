// SPDX-License-Identifier: MIT
// expect: satisfaction of 'TensorStore<S>' \[with S = NoBytes\]
// requires: spo/io/state_dict.hpp
/// @brief State dicts load from any TensorStore (a file in memory, mapped, sharded, a single-file checkpoint's
/// component): a store that cannot serve a tensor's bytes must be rejected naming the concept.
#include <string>
#include <string_view>
#include <vector>

#include "spo/io/state_dict.hpp"
#include "spo/nn/linear.hpp"

struct NoBytes {
  std::string source = "nowhere";
  bool contains(std::string_view) const { return false; }
  std::vector<std::string> names() const { return {}; }
#ifdef SPO_FAILTEST_CONTROL
  spo::io::TensorBytes bytes(std::string_view) const { return {}; }
#endif
};

int main() {
  spo::nn::Linear<float> l(2, 2);
  spo::io::StateDictLoadOptions lenient;
  lenient.strict = false;
  return static_cast<int>(spo::io::load_state_dict(l, NoBytes{}, lenient).loaded.size());
}
