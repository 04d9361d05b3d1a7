// SPDX-License-Identifier: MIT
/// @brief What every transport implements (byte-level collectives) and the typed collectives built on it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/dist/concepts.hpp"

namespace spo::dist {

/// A collective failed for the whole run: another rank aborted, or a collective waited past the timeout.
class comm_error : public error {
 public:
  using error::error;
};

/// The element types on the wire.
enum class Dtype : std::uint8_t { f32, f64, i64, u8 };

template <Element T>
inline constexpr Dtype dtype_of = std::is_same_v<T, float>          ? Dtype::f32
                                  : std::is_same_v<T, double>       ? Dtype::f64
                                  : std::is_same_v<T, std::int64_t> ? Dtype::i64
                                                                    : Dtype::u8;

inline constexpr std::size_t dtype_size(Dtype d) {
  return d == Dtype::f32 ? 4 : d == Dtype::f64 ? 8 : d == Dtype::i64 ? 8 : 1;
}

inline constexpr std::string_view to_string(ReduceOp op) {
  return op == ReduceOp::sum ? "sum" : op == ReduceOp::mean ? "mean" : op == ReduceOp::max ? "max" : "min";
}

namespace detail {
template <class T>
void combine(T* acc, const T* x, std::size_t n, ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean:
      for (std::size_t i = 0; i < n; ++i) acc[i] += x[i];
      break;
    case ReduceOp::max:
      for (std::size_t i = 0; i < n; ++i) acc[i] = std::max(acc[i], x[i]);
      break;
    case ReduceOp::min:
      for (std::size_t i = 0; i < n; ++i) acc[i] = std::min(acc[i], x[i]);
      break;
  }
}
}  // namespace detail

/// acc[i] = acc[i] op x[i] for n elements of type d (the host reduction of the transports that reduce themselves:
/// called in rank order, so sums are ((x_0 + x_1) + x_2) + ...).
inline void combine(void* acc, const void* x, std::size_t n, Dtype d, ReduceOp op) {
  switch (d) {
    case Dtype::f32:
      detail::combine(static_cast<float*>(acc), static_cast<const float*>(x), n, op);
      break;
    case Dtype::f64:
      detail::combine(static_cast<double*>(acc), static_cast<const double*>(x), n, op);
      break;
    case Dtype::i64:
      detail::combine(static_cast<std::int64_t*>(acc), static_cast<const std::int64_t*>(x), n, op);
      break;
    case Dtype::u8:
      detail::combine(static_cast<std::uint8_t*>(acc), static_cast<const std::uint8_t*>(x), n, op);
      break;
  }
}

/// What a transport's started collective implements.
class PendingState {
 public:
  virtual ~PendingState() = default;
  /// True once the collective completed (progresses it).
  virtual bool test() = 0;
  /// Blocks until completion; a transport with a timeout aborts or throws comm_error past it.
  virtual void wait() = 0;
};

/*!
  WHAT THIS REPRESENTS
    A started collective (a PendingCollective): the transport's state plus a finishing step run once on
    completion (the division of a mean). A default-constructed Pending is complete.
!*/
class Pending {
 public:
  Pending() = default;
  Pending(std::unique_ptr<PendingState> state, std::function<void()> finish)
      : state_(std::move(state)), finish_(std::move(finish)) {}

  bool ready() {
    if (state_ && !state_->test()) return false;
    complete();
    return true;
  }
  void wait() {
    if (state_) state_->wait();
    complete();
  }

 private:
  void complete() {
    state_.reset();
    if (finish_) std::exchange(finish_, {})();
  }
  std::unique_ptr<PendingState> state_;
  std::function<void()> finish_;
};

/// The default collective timeout (seconds): torch.distributed's default for NCCL and Gloo process groups.
inline constexpr double default_timeout_s = 1800.0;

/*!
  WHAT THIS REPRESENTS
    One rank's end of a transport (single process, threads, MPI, NCCL): the byte-level collectives a transport
    implements, and on top of them the typed collectives of the Communicator concept, which every transport
    therefore satisfies. Means are sums divided by size() on completion, on every rank.
!*/
class CommunicatorBase {
 public:
  virtual ~CommunicatorBase() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string_view name() const = 0;
  /// Starts the elementwise reduction (op is sum, max or min) of n elements of type d at data, in place.
  virtual Pending start_all_reduce_raw(void* data, std::size_t n, Dtype d, ReduceOp op) = 0;
  /// Copies `bytes` bytes at root's data to every rank's data.
  virtual void broadcast_raw(void* data, std::size_t bytes, int root) = 0;
  virtual std::vector<std::vector<std::uint8_t>> all_gather(std::span<const std::uint8_t> block) = 0;
  virtual void barrier() = 0;
  [[noreturn]] virtual void abort(std::string_view message) = 0;
  /// Whether reductions and broadcasts take device memory (NCCL) rather than host memory.
  virtual bool device_buffers() const { return false; }
  /// Whether the transport averages itself (start_all_reduce_raw accepts ReduceOp::mean).
  virtual bool native_mean() const { return false; }

  double timeout_s() const { return timeout_s_; }
  void set_timeout(double seconds) {
    SPO_EXPECT(seconds > 0, "the collective timeout must be positive, got " << seconds << " s");
    timeout_s_ = seconds;
  }

  template <Element T>
  Pending start_all_reduce(std::span<T> x, ReduceOp op) {
    SPO_CHECK(op != ReduceOp::mean || std::is_floating_point_v<T>, "all_reduce: mean of an integer buffer");
    const bool divide = op == ReduceOp::mean && !native_mean();
    Pending p = start_all_reduce_raw(x.data(), x.size(), dtype_of<T>, divide ? ReduceOp::sum : op);
    if (!divide || size() == 1) return p;
    const T w = static_cast<T>(size());
    // The division runs once the sum is complete; the pending handle keeps the span.
    auto state = std::make_unique<Chained>(std::move(p));
    return Pending(std::move(state), [x, w] {
      for (T& v : x) v /= w;
    });
  }
  template <Element T>
  void all_reduce(std::span<T> x, ReduceOp op) {
    start_all_reduce(x, op).wait();
  }
  template <Element T>
  void broadcast(std::span<T> x, int root) {
    SPO_CHECK(root >= 0 && root < size(), "broadcast: root " << root << " of " << size() << " ranks");
    broadcast_raw(x.data(), x.size_bytes(), root);
  }

 protected:
  double timeout_s_ = default_timeout_s;

 private:
  /// A Pending as the state of another (the mean's division chained after the sum).
  struct Chained final : PendingState {
    explicit Chained(Pending p) : inner(std::move(p)) {}
    bool test() override { return inner.ready(); }
    void wait() override { inner.wait(); }
    Pending inner;
  };
};

/// A duration in seconds as text (%g: "3", "0.2", "1800").
inline std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

/// Seconds since `start` (the timeouts' clock).
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace spo::dist
