// SPDX-License-Identifier: MIT
/// @brief A communicator chosen at run time (by how the program was launched), as one value type.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "spo/dist/communicator_base.hpp"
#include "spo/dist/single_process.hpp"

namespace spo::dist {

/// Shares one transport (SingleProcess when default-constructed); copies refer to the same ranks.
class AnyCommunicator {
 public:
  AnyCommunicator() : impl_(std::make_shared<SingleProcess>()) {}
  explicit AnyCommunicator(std::shared_ptr<CommunicatorBase> impl) : impl_(std::move(impl)) {
    SPO_CHECK(impl_ != nullptr, "AnyCommunicator: no transport");
  }

  int rank() const { return impl_->rank(); }
  int size() const { return impl_->size(); }
  bool is_root() const { return impl_->rank() == 0; }
  std::string_view name() const { return impl_->name(); }
  bool device_buffers() const { return impl_->device_buffers(); }
  double timeout_s() const { return impl_->timeout_s(); }
  void set_timeout(double seconds) { impl_->set_timeout(seconds); }

  template <Element T>
  void all_reduce(std::span<T> x, ReduceOp op) {
    impl_->all_reduce(x, op);
  }
  template <Element T>
  Pending start_all_reduce(std::span<T> x, ReduceOp op) {
    return impl_->start_all_reduce(x, op);
  }
  template <Element T>
  void broadcast(std::span<T> x, int root) {
    impl_->broadcast(x, root);
  }
  std::vector<std::vector<std::uint8_t>> all_gather(std::span<const std::uint8_t> block) {
    return impl_->all_gather(block);
  }
  void barrier() { impl_->barrier(); }
  [[noreturn]] void abort(std::string_view message) {
    impl_->abort(message);
    std::terminate();  // transports never return from abort
  }

  CommunicatorBase& transport() { return *impl_; }

 private:
  std::shared_ptr<CommunicatorBase> impl_;
};
static_assert(Communicator<AnyCommunicator>);

}  // namespace spo::dist
