// SPDX-License-Identifier: MIT
/// @brief The dist module's contract: what a communicator between the ranks of a data-parallel run offers.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace spo::dist {

/// How all_reduce combines the ranks' buffers. mean = sum, then divided by the world size (floating types only).
enum class ReduceOp { sum, mean, max, min };

/// The element types collectives move: gradients and parameters (float, double), counts (int64), raw bytes.
template <class T>
concept Element =
    std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, std::int64_t> || std::same_as<T, std::uint8_t>;

/// A started collective: ready() polls, wait() blocks until it completed (or throws what the collective failed with).
template <class P>
concept PendingCollective = requires(P& p) {
  { p.ready() } -> std::same_as<bool>;
  p.wait();
};

/*!
  WHAT THIS REPRESENTS
    The ranks 0 .. size() - 1 of one data-parallel run and the collectives between them (torch.distributed's
    all_reduce / broadcast / all_gather / barrier as SPO's training scripts use them). Every rank calls the same
    collectives in the same order.
  REQUIRES
    - all_reduce(span, op): every rank's span holds the elementwise reduction of all ranks' spans afterwards,
      bitwise the same on every rank
    - start_all_reduce(span, op) -> PendingCollective: the same, asynchronous; the span must stay alive and
      untouched until wait() returns
    - broadcast(span, root): every rank's span holds root's afterwards (same sizes on every rank)
    - all_gather(block) -> one block per rank, in rank order; blocks may differ in size
    - barrier(); abort(message) ends every rank of the run with the message of the rank that called it, never
      returning; a collective that waits longer than the communicator's timeout aborts the run the same way
!*/
template <class C>
concept Communicator = requires(C& c, std::span<float> f, std::span<double> d, std::span<std::int64_t> i,
                                std::span<const std::uint8_t> block, std::string_view message) {
  { c.rank() } -> std::same_as<int>;
  { c.size() } -> std::same_as<int>;
  { c.name() } -> std::convertible_to<std::string_view>;
  c.all_reduce(f, ReduceOp::sum);
  c.all_reduce(d, ReduceOp::mean);
  c.all_reduce(i, ReduceOp::sum);
  { c.start_all_reduce(f, ReduceOp::mean) } -> PendingCollective;
  { c.start_all_reduce(d, ReduceOp::mean) } -> PendingCollective;
  c.broadcast(d, 0);
  c.broadcast(i, 0);
  { c.all_gather(block) } -> std::same_as<std::vector<std::vector<std::uint8_t>>>;
  c.barrier();
  c.abort(message);
};

}  // namespace spo::dist
