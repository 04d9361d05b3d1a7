// SPDX-License-Identifier: MIT
/// @brief NCCL ranks (one GPU each): reductions and broadcasts of device buffers, bootstrapped by a host communicator.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <cuda_runtime.h>

#include "spo/dist/communicator_base.hpp"
#include "spo/dist/single_process.hpp"

#include <nccl.h>

/// Throws spo::error naming the NCCL call and its error string.
#define SPO_NCCL_CHECK(call)                                                                                       \
  do {                                                                                                             \
    const ncclResult_t spo_nccl_result_ = (call);                                                                  \
    SPO_CHECK(                                                                                                     \
        spo_nccl_result_ == ncclSuccess || spo_nccl_result_ == ncclInProgress,                                     \
        #call << " failed: " << ncclGetErrorString(spo_nccl_result_) << " (" << ncclGetLastError(nullptr) << ")"); \
  } while (0)

namespace spo::dist {

namespace detail {
inline ncclDataType_t nccl_type(Dtype d) {
  switch (d) {
    case Dtype::f32:
      return ncclFloat32;
    case Dtype::f64:
      return ncclFloat64;
    case Dtype::i64:
      return ncclInt64;
    case Dtype::u8:
      return ncclUint8;
  }
  return ncclUint8;
}
inline ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::mean:
      return ncclAvg;
    case ReduceOp::max:
      return ncclMax;
    case ReduceOp::min:
      return ncclMin;
  }
  return ncclSum;
}
}  // namespace detail

/*!
  WHAT THIS REPRESENTS
    One rank per GPU. all_reduce and broadcast take DEVICE buffers (device_buffers() is true; spo::cuda tensors'
    data) and run on the default stream as every spo::cuda kernel does; mean is NCCL's ncclAvg. all_gather and
    barrier, which carry host data, go through the bootstrap communicator (MPI), which also broadcasts rank 0's
    ncclUniqueId at construction. The communicator is non-blocking (ncclConfig_t blocking = 0): every wait polls the
    stream and ncclCommGetAsyncError, and past the timeout calls ncclCommAbort and aborts the run through the
    bootstrap communicator, so a dead peer never hangs a rank.
    NCCL puts at most one rank on a GPU: several ranks on one GPU are a launch error (NCCL's "Duplicate GPU").
!*/
class NcclCommunicator final : public CommunicatorBase {
 public:
  /// `bootstrap` (rank/size of the run; SingleProcess for one rank) and the CUDA device this rank uses.
  explicit NcclCommunicator(std::shared_ptr<CommunicatorBase> bootstrap = std::make_shared<SingleProcess>(),
                            int device = 0)
      : bootstrap_(std::move(bootstrap)) {
    timeout_s_ = bootstrap_->timeout_s();
    SPO_CHECK(cudaSetDevice(device) == cudaSuccess, "cudaSetDevice(" << device << ") failed");
    ncclUniqueId id{};
    if (bootstrap_->rank() == 0) SPO_NCCL_CHECK(ncclGetUniqueId(&id));
    std::span<std::uint8_t> bytes(reinterpret_cast<std::uint8_t*>(&id), sizeof id);
    bootstrap_->broadcast(bytes, 0);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    SPO_NCCL_CHECK(ncclCommInitRankConfig(&comm_, bootstrap_->size(), id, bootstrap_->rank(), &config));
    wait_comm("ncclCommInitRankConfig");
  }
  ~NcclCommunicator() override {
    if (comm_) {
      ncclCommFinalize(comm_);
      ncclCommDestroy(comm_);
    }
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  std::string_view name() const override { return "nccl"; }
  bool device_buffers() const override { return true; }
  bool native_mean() const override { return true; }

  Pending start_all_reduce_raw(void* data, std::size_t n, Dtype d, ReduceOp op) override {
    SPO_NCCL_CHECK(ncclAllReduce(data, data, n, detail::nccl_type(d), detail::nccl_op(op), comm_, nullptr));
    return Pending(std::make_unique<StreamWait>(*this), {});
  }
  void broadcast_raw(void* data, std::size_t bytes, int root) override {
    SPO_NCCL_CHECK(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, nullptr));
    StreamWait(*this).wait();
  }
  std::vector<std::vector<std::uint8_t>> all_gather(std::span<const std::uint8_t> block) override {
    return bootstrap_->all_gather(block);
  }
  void barrier() override { bootstrap_->barrier(); }
  [[noreturn]] void abort(std::string_view message) override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    bootstrap_->abort(message);
    std::terminate();  // the bootstrap never returns from abort
  }

 private:
  /// Waits for the communicator's pending initialisation or enqueue (non-blocking mode).
  void wait_comm(const char* what) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) abort(std::string(what) + " failed: " + ncclGetErrorString(state));
      if (seconds_since(start) > timeout_s_) abort(std::string(what) + " timed out");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  /// Completion of the work enqueued so far on the default stream, checked for NCCL errors and the timeout.
  struct StreamWait final : PendingState {
    explicit StreamWait(NcclCommunicator& c) : comm(c) {
      SPO_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming) == cudaSuccess, "cudaEventCreate failed");
      SPO_CHECK(cudaEventRecord(event, nullptr) == cudaSuccess, "cudaEventRecord failed");
    }
    ~StreamWait() override { cudaEventDestroy(event); }
    bool test() override {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm.comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress)
        comm.abort(std::string("NCCL collective failed: ") + ncclGetErrorString(state));
      const cudaError_t e = cudaEventQuery(event);
      if (e == cudaErrorNotReady) return false;
      SPO_CHECK(e == cudaSuccess, "NCCL collective: " << cudaGetErrorString(e));
      return true;
    }
    void wait() override {
      const auto start = std::chrono::steady_clock::now();
      while (!test()) {
        if (seconds_since(start) > comm.timeout_s_)
          comm.abort("NCCL collective timed out after " + seconds_text(comm.timeout_s_) + " s");
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    }
    NcclCommunicator& comm;
    cudaEvent_t event{};
  };

  std::shared_ptr<CommunicatorBase> bootstrap_;
  ncclComm_t comm_ = nullptr;
};
static_assert(Communicator<NcclCommunicator>);

}  // namespace spo::dist
