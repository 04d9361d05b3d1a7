// SPDX-License-Identifier: MIT
// expect: satisfaction of 'RoundMethod<Derived>' \[with Derived = NoRound\]
// requires: spo/train/round_trainer.hpp
/// @brief The shared round loop drives a method through its round: a method that does not supply run_round must be
/// rejected naming the concept when the loop runs.
#include "spo/nn/linear.hpp"
#include "spo/train/round_trainer.hpp"

using Policy = spo::nn::Linear<float>;

class NoRound : public spo::train::RoundTrainer<NoRound, Policy> {
 public:
  explicit NoRound(Policy& p) : RoundTrainer(p, "none", 1, 1, 1e-3, 0.0, 1.0, 1, nlohmann::json::object()) {}
#ifdef SPO_FAILTEST_CONTROL
  spo::train::RoundRecord run_round() { return {++round_}; }
#endif
};

int main() {
  Policy p(2, 2);
  NoRound method(p);
  method.run("out");
  return static_cast<int>(method.round());
}
