// SPDX-License-Identifier: MIT
/// @brief The communicator of a run that is not distributed: one rank, every collective the identity.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spo/dist/communicator_base.hpp"

namespace spo::dist {

/// One rank: reductions and broadcasts leave the buffers as they are; abort throws comm_error with the message.
class SingleProcess final : public CommunicatorBase {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string_view name() const override { return "single"; }
  Pending start_all_reduce_raw(void*, std::size_t, Dtype, ReduceOp) override { return {}; }
  void broadcast_raw(void*, std::size_t, int) override {}
  std::vector<std::vector<std::uint8_t>> all_gather(std::span<const std::uint8_t> block) override {
    return {std::vector<std::uint8_t>(block.begin(), block.end())};
  }
  void barrier() override {}
  [[noreturn]] void abort(std::string_view message) override { throw comm_error(std::string(message)); }
};
static_assert(Communicator<SingleProcess>);

}  // namespace spo::dist
