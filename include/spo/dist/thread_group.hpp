// SPDX-License-Identifier: MIT
/// @brief In-process ranks: a deterministic communicator between threads, for tests without a launcher.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "spo/dist/any_communicator.hpp"
#include "spo/dist/communicator_base.hpp"

namespace spo::dist {

/*!
  WHAT THIS REPRESENTS
    The meeting point of `size` ranks that are threads of one process. Every collective is one exchange: each
    rank deposits a block, the last to arrive publishes all blocks, and each rank computes its result from them
    (reductions in rank order, so every rank's result is bitwise the same and reproducible run to run).
    abort(rank, message) wakes every waiting rank with comm_error naming the aborting rank and its message; a
    rank that waits longer than the timeout aborts the group the same way, naming the ranks it waited for.
!*/
class ThreadGroup {
 public:
  explicit ThreadGroup(int size, double timeout_s = default_timeout_s)
      : size_(size),
        timeout_s_(timeout_s),
        slots_(static_cast<std::size_t>(size)),
        present_(static_cast<std::size_t>(size), false) {
    SPO_EXPECT(size >= 1, "a thread group needs at least one rank, got " << size);
  }

  int size() const { return size_; }
  double timeout_s() const { return timeout_s_; }

  /// Deposits rank's block and returns every rank's block of this exchange, in rank order.
  std::vector<std::vector<std::uint8_t>> exchange(int rank, std::span<const std::uint8_t> block,
                                                  std::string_view what) {
    std::unique_lock lock(mutex_);
    throw_if_aborted();
    slots_[static_cast<std::size_t>(rank)].assign(block.begin(), block.end());
    present_[static_cast<std::size_t>(rank)] = true;
    if (++arrived_ == size_) {
      published_ = std::move(slots_);
      slots_.assign(static_cast<std::size_t>(size_), {});
      present_.assign(static_cast<std::size_t>(size_), false);
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return published_;
    }
    const std::uint64_t generation = generation_;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    const bool done = cv_.wait_until(lock, deadline, [&] { return generation_ != generation || aborted_; });
    throw_if_aborted();
    if (!done) {
      std::ostringstream os;
      os << "rank " << rank << ": " << what << " timed out after " << seconds_text(timeout_s_)
         << " s waiting for rank(s)";
      for (int r = 0; r < size_; ++r)
        if (!present_[static_cast<std::size_t>(r)]) os << " " << r;
      abort_locked(rank, os.str());
      throw_if_aborted();
    }
    return published_;
  }

  /// Ends the group: every rank waiting now or calling later throws comm_error with this message.
  void abort(int rank, const std::string& message) {
    std::lock_guard lock(mutex_);
    abort_locked(rank, message);
  }

  bool aborted() const {
    std::lock_guard lock(mutex_);
    return aborted_;
  }

 private:
  void abort_locked(int rank, const std::string& message) {
    if (aborted_) return;
    aborted_ = true;
    abort_rank_ = rank;
    abort_message_ = message;
    cv_.notify_all();
  }
  void throw_if_aborted() const {
    if (aborted_)
      throw comm_error("the run was aborted by rank " + std::to_string(abort_rank_) + ": " + abort_message_);
  }

  int size_;
  double timeout_s_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::vector<std::uint8_t>> slots_, published_;
  std::vector<bool> present_;
  int arrived_ = 0;
  std::uint64_t generation_ = 0;
  bool aborted_ = false;
  int abort_rank_ = -1;
  std::string abort_message_;
};

/// One thread's rank of a ThreadGroup. Asynchronous all-reduces complete when started (every rank starts them in
/// the same order, so starting is the rendezvous).
class ThreadCommunicator final : public CommunicatorBase {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank) : group_(std::move(group)), rank_(rank) {
    SPO_CHECK(rank_ >= 0 && rank_ < group_->size(), "rank " << rank_ << " of " << group_->size());
    timeout_s_ = group_->timeout_s();
  }

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  std::string_view name() const override { return "threads"; }

  Pending start_all_reduce_raw(void* data, std::size_t n, Dtype d, ReduceOp op) override {
    const std::size_t bytes = n * dtype_size(d);
    const auto blocks = group_->exchange(rank_, {static_cast<const std::uint8_t*>(data), bytes}, "all_reduce");
    for (std::size_t r = 0; r < blocks.size(); ++r)
      SPO_CHECK(blocks[r].size() == bytes,
                "all_reduce: rank " << r << " passed " << blocks[r].size() << " bytes, rank " << rank_ << " " << bytes);
    std::memcpy(data, blocks[0].data(), bytes);
    for (std::size_t r = 1; r < blocks.size(); ++r) combine(data, blocks[r].data(), n, d, op);
    return {};
  }
  void broadcast_raw(void* data, std::size_t bytes, int root) override {
    const auto blocks = group_->exchange(
        rank_, {static_cast<const std::uint8_t*>(data), rank_ == root ? bytes : std::size_t{0}}, "broadcast");
    const auto& b = blocks[static_cast<std::size_t>(root)];
    SPO_CHECK(b.size() == bytes,
              "broadcast: root " << root << " sent " << b.size() << " bytes, rank " << rank_ << " expects " << bytes);
    if (rank_ != root) std::memcpy(data, b.data(), bytes);
  }
  std::vector<std::vector<std::uint8_t>> all_gather(std::span<const std::uint8_t> block) override {
    return group_->exchange(rank_, block, "all_gather");
  }
  void barrier() override { group_->exchange(rank_, {}, "barrier"); }
  [[noreturn]] void abort(std::string_view message) override {
    group_->abort(rank_, std::string(message));
    throw comm_error("rank " + std::to_string(rank_) + " aborted the run: " + std::string(message));
  }

 private:
  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};
static_assert(Communicator<ThreadCommunicator>);

/*!
  ENSURES
    - runs f(AnyCommunicator) on `size` threads, one rank each (a ThreadCommunicator), and joins them
    - an exception on one rank aborts the group (the others' collectives throw comm_error instead of hanging);
      afterwards the first rank that failed on its own is reported: comm_error "rank r: <its message>"
!*/
template <class F>
void run_ranks(int size, F&& f, double timeout_s = default_timeout_s) {
  auto group = std::make_shared<ThreadGroup>(size, timeout_s);
  std::vector<std::exception_ptr> failed(static_cast<std::size_t>(size));
  std::vector<std::string> messages(static_cast<std::size_t>(size));
  std::vector<bool> own(static_cast<std::size_t>(size), false);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      try {
        f(AnyCommunicator(std::make_shared<ThreadCommunicator>(group, r)));
      } catch (const std::exception& e) {
        const auto i = static_cast<std::size_t>(r);
        failed[i] = std::current_exception();
        messages[i] = e.what();
        own[i] = dynamic_cast<const comm_error*>(&e) == nullptr || !group->aborted();
        group->abort(r, e.what());
      }
    });
  for (auto& t : threads) t.join();
  for (int pass = 0; pass < 2; ++pass)
    for (int r = 0; r < size; ++r) {
      const auto i = static_cast<std::size_t>(r);
      if (failed[i] && (own[i] || pass == 1)) throw comm_error("rank " + std::to_string(r) + ": " + messages[i]);
    }
}

}  // namespace spo::dist
