// SPDX-License-Identifier: MIT
// expect: satisfaction of 'Communicator<C>' \[with C = NoAbort\]
// requires: spo/dist/exchange.hpp
/// @brief A transport must be able to end every rank of the run (abort); one that cannot would leave the other ranks
/// waiting in their next collective when one rank fails, so it is rejected naming the concept.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "spo/dist/communicator_base.hpp"
#include "spo/dist/exchange.hpp"

struct NoAbort {
  int rank() { return 0; }
  int size() { return 1; }
  std::string_view name() { return "no-abort"; }
  template <class T>
  void all_reduce(std::span<T>, spo::dist::ReduceOp) {}
  template <class T>
  spo::dist::Pending start_all_reduce(std::span<T>, spo::dist::ReduceOp) {
    return {};
  }
  template <class T>
  void broadcast(std::span<T>, int) {}
  std::vector<std::vector<std::uint8_t>> all_gather(std::span<const std::uint8_t> b) { return {{b.begin(), b.end()}}; }
  void barrier() {}
#ifdef SPO_FAILTEST_CONTROL
  [[noreturn]] void abort(std::string_view) { throw 0; }
#endif
};

int main() {
  NoAbort c;
  const std::vector<std::int64_t> mine{1, 2};
  return static_cast<int>(spo::dist::all_gather_values(c, std::span<const std::int64_t>(mine)).size());
}
