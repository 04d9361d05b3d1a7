// SPDX-License-Identifier: MIT
/// @brief DDP's gradient averaging: trainable gradients in flat buckets, each all-reduced as soon as it is ready.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "spo/dist/any_communicator.hpp"
#include "spo/nn/gradient_hook.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/tensor.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::dist {

/// Bucket sizes as PyTorch DDP's defaults: bucket_cap_mb = 25, and a small first bucket (the gradients ready first).
struct BucketOptions {
  std::size_t bucket_cap_bytes = std::size_t{25} << 20;
  std::size_t first_bucket_bytes = std::size_t{1} << 20;
};

/*!
  WHAT THIS REPRESENTS
    The mean over ranks of the trainable gradients of one model (torch DistributedDataParallel):
      - at construction the trainable parameters are mapped, in REVERSE visiting order (the order backward completes
        them), into buckets of at most bucket_cap_bytes (the first at most first_bucket_bytes; a larger parameter
        gets a bucket of its own);
      - inside overlap() (a scope around the LAST backward before the step), each gradient_ready() report marks its
        parameter; when every parameter of a bucket is marked, the bucket is packed into its flat buffer and its
        asynchronous all-reduce (mean) starts while backward goes on;
      - finish() starts the buckets not started yet (parameters their layers never report, or a backward run outside
        overlap(): gradient accumulation, DDP's no_sync), waits for all, and writes the means back into the gradients.
    Buffers live where the transport reduces: on the device for NCCL, on the host otherwise (device gradients are
    staged through the host, as gloo does with CUDA tensors). With one rank nothing is packed or moved.
    Every rank ends with bitwise the same gradients (the transports' all-reduce guarantees it), so the global
    gradient norm, clipping and the optimizer step agree across ranks without another collective.
!*/
template <Scalar T, Device D>
requires Element<T>
class GradientReducer {
 public:
  template <class Model>
  GradientReducer(Model& model, AnyCommunicator comm, BucketOptions options = {}) : comm_(std::move(comm)) {
    std::vector<nn::Parameter<T, D>*> params;
    std::vector<std::string> names;
    model.visit_parameters(
        [&](std::string_view name, auto& p) {
          if constexpr (std::is_same_v<std::remove_cvref_t<decltype(p)>, nn::Parameter<T, D>>) {
            if (p.trainable) {
              params.push_back(&p);
              names.emplace_back(name);
            }
          }
        },
        {});
    std::size_t cap = options.first_bucket_bytes;
    for (std::size_t k = params.size(); k-- > 0;) {
      const auto bytes = static_cast<std::size_t>(params[k]->value.numel()) * sizeof(T);
      if (buckets_.empty() || (buckets_.back().bytes + bytes > cap && !buckets_.back().params.empty())) {
        if (!buckets_.empty()) cap = options.bucket_cap_bytes;
        buckets_.emplace_back();
      }
      auto& b = buckets_.back();
      index_[params[k]] = Slot{buckets_.size() - 1, names[k]};
      b.params.push_back(params[k]);
      b.bytes += bytes;
    }
  }

  std::size_t bucket_count() const { return buckets_.size(); }
  /// The bytes of each bucket, in launch order.
  std::vector<std::size_t> bucket_bytes() const {
    std::vector<std::size_t> v;
    for (const auto& b : buckets_) v.push_back(b.bytes);
    return v;
  }
  /// How many buckets the last finish() found already started during backward.
  std::size_t overlapped() const { return overlapped_; }

  /// The scope around the last backward before the step: buckets start as their gradients are reported ready.
  nn::gradient_ready_scope overlap() {
    return nn::gradient_ready_scope([this](const void* p) { on_ready(p); });
  }

  /// Starts the remaining buckets, waits for every bucket and writes the rank mean into every trainable gradient.
  void finish() {
    overlapped_ = 0;
    if (comm_.size() > 1) {
      for (auto& b : buckets_)
        if (b.started)
          ++overlapped_;
        else
          start(b);
      for (auto& b : buckets_) {
        b.pending.wait();
        unpack(b);
      }
    }
    for (auto& b : buckets_) {
      b.started = false;
      b.reported.assign(b.params.size(), false);
      b.ready = 0;
    }
  }

 private:
  struct Bucket {
    std::vector<nn::Parameter<T, D>*> params;
    std::size_t bytes = 0;
    std::vector<bool> reported;
    std::size_t ready = 0;
    bool started = false;
    std::vector<T> host;  // the flat buffer, host transports
    Tensor<T, D> device;  // the flat buffer, device transports
    Pending pending;
  };
  struct Slot {
    std::size_t bucket;
    std::string name;
  };

  void on_ready(const void* p) {
    if (comm_.size() == 1) return;
    const auto it = index_.find(p);
    if (it == index_.end()) return;  // not a trainable parameter of this model
    auto& b = buckets_[it->second.bucket];
    if (b.reported.size() != b.params.size()) b.reported.assign(b.params.size(), false);
    std::size_t k = 0;
    while (b.params[k] != p) ++k;
    SPO_CHECK(!b.reported[k] && !b.started,
              "gradient of \"" << it->second.name
                               << "\" reported ready twice in one backward (a layer used twice?): run that backward "
                                  "outside GradientReducer::overlap()");
    b.reported[k] = true;
    if (++b.ready == b.params.size()) {
      start(b);
      // Progress the buckets in flight: MPI moves non-blocking collectives only inside MPI calls.
      for (auto& other : buckets_)
        if (other.started && &other != &b) other.pending.ready();
    }
  }

  void start(Bucket& b) {
    std::size_t n = 0;
    for (const auto* p : b.params) n += static_cast<std::size_t>(p->grad.numel());
    if (comm_.device_buffers()) {
      if (b.device.numel() != static_cast<std::int64_t>(n))
        b.device = Tensor<T, D>::uninitialized(Shape{static_cast<std::int64_t>(n)});  // [n]
      std::int64_t at = 0;
      for (const auto* p : b.params) {
        copy_elements<D>(p->grad.data(), p->grad.numel(), b.device.data() + at);
        at += p->grad.numel();
      }
      b.pending = comm_.start_all_reduce(std::span<T>(b.device.data(), n), ReduceOp::mean);
    } else {
      b.host.resize(n);
      std::size_t at = 0;
      for (const auto* p : b.params) {
        if constexpr (D::host_accessible) {
          std::memcpy(b.host.data() + at, p->grad.data(), static_cast<std::size_t>(p->grad.numel()) * sizeof(T));
        } else {
          const auto h = transfer<cpu>(p->grad);
          std::memcpy(b.host.data() + at, h.data(), static_cast<std::size_t>(h.numel()) * sizeof(T));
        }
        at += static_cast<std::size_t>(p->grad.numel());
      }
      b.pending = comm_.start_all_reduce(std::span<T>(b.host), ReduceOp::mean);
    }
    b.started = true;
  }

  void unpack(Bucket& b) {
    std::size_t at = 0;
    for (auto* p : b.params) {
      const auto n = static_cast<std::size_t>(p->grad.numel());
      if (comm_.device_buffers()) {
        copy_elements<D>(b.device.data() + at, static_cast<std::int64_t>(n), p->grad.data());
      } else if constexpr (D::host_accessible) {
        std::memcpy(p->grad.data(), b.host.data() + at, n * sizeof(T));
      } else {
        auto h = Tensor<T, cpu>::uninitialized(p->grad.shape());
        std::memcpy(h.data(), b.host.data() + at, n * sizeof(T));
        p->grad = transfer<D>(h);
      }
      at += n;
    }
  }

  AnyCommunicator comm_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const void*, Slot> index_;
  std::size_t overlapped_ = 0;
};

}  // namespace spo::dist
