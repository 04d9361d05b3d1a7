// SPDX-License-Identifier: MIT
/// @brief MPI ranks (CPU processes on one or several nodes): deterministic all-reduce, timeouts, MPI_Abort.
#pragma once

#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "spo/dist/communicator_base.hpp"

#include <mpi.h>

namespace spo::dist {

namespace detail {
inline MPI_Datatype mpi_type(Dtype d) {
  switch (d) {
    case Dtype::f32:
      return MPI_FLOAT;
    case Dtype::f64:
      return MPI_DOUBLE;
    case Dtype::i64:
      return MPI_INT64_T;
    case Dtype::u8:
      return MPI_UINT8_T;
  }
  return MPI_BYTE;
}

inline int to_count(std::size_t n, const char* what) {
  SPO_CHECK(n <= static_cast<std::size_t>(INT_MAX), what << ": " << n << " elements exceed MPI's int counts");
  return static_cast<int>(n);
}
}  // namespace detail

/// MPI_Init_thread (funneled: only the main thread calls MPI) when MPI is not initialised yet, and MPI_Finalize at
/// destruction when it initialised it. Shared by the communicators of a process.
class MpiEnvironment {
 public:
  MpiEnvironment() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owner_ = true;
    }
  }
  ~MpiEnvironment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

 private:
  bool owner_ = false;
};

/*!
  WHAT THIS REPRESENTS
    The ranks of an MPI communicator (MPI_COMM_WORLD by default, duplicated). Every collective is non-blocking
    underneath and waited for by polling with the timeout: past it, the rank prints what it waited for and calls
    MPI_Abort, which ends every rank (a rank killed by a signal ends the job through the launcher the same way).
    all_reduce is deterministic whatever MPI's own algorithms: the buffer is cut into size() chunks, chunk r of every
    rank is sent to rank r (MPI_Ialltoallv), which sums the copies in rank order ((x_0 + x_1) + x_2 ...), and the
    reduced chunks are gathered back to every rank (MPI_Iallgatherv). Every rank thus holds bitwise the same result,
    the reduction order is the thread backend's, and each rank sends and receives 2 (W - 1) / W of the buffer.
!*/
class MpiCommunicator final : public CommunicatorBase {
 public:
  explicit MpiCommunicator(std::shared_ptr<MpiEnvironment> env = std::make_shared<MpiEnvironment>(),
                           MPI_Comm base = MPI_COMM_WORLD)
      : env_(std::move(env)) {
    MPI_Comm_dup(base, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view name() const override { return "mpi"; }
  MPI_Comm handle() const { return comm_; }

  Pending start_all_reduce_raw(void* data, std::size_t n, Dtype d, ReduceOp op) override {
    if (size_ == 1 || n == 0) return {};
    return Pending(std::make_unique<AllReduce>(*this, data, n, d, op), {});
  }

  void broadcast_raw(void* data, std::size_t bytes, int root) override {
    MPI_Request req;
    MPI_Ibcast(data, detail::to_count(bytes, "broadcast"), MPI_BYTE, root, comm_, &req);
    wait_request(req, "broadcast");
  }

  std::vector<std::vector<std::uint8_t>> all_gather(std::span<const std::uint8_t> block) override {
    const std::int64_t mine = static_cast<std::int64_t>(block.size());
    std::vector<std::int64_t> sizes(static_cast<std::size_t>(size_));
    MPI_Request req;
    MPI_Iallgather(&mine, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, comm_, &req);
    wait_request(req, "all_gather (sizes)");
    std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
    std::size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      displs[static_cast<std::size_t>(r)] = detail::to_count(total, "all_gather");
      counts[static_cast<std::size_t>(r)] =
          detail::to_count(static_cast<std::size_t>(sizes[static_cast<std::size_t>(r)]), "all_gather");
      total += static_cast<std::size_t>(sizes[static_cast<std::size_t>(r)]);
    }
    std::vector<std::uint8_t> all(total);
    MPI_Iallgatherv(block.data(), static_cast<int>(block.size()), MPI_BYTE, all.data(), counts.data(), displs.data(),
                    MPI_BYTE, comm_, &req);
    wait_request(req, "all_gather");
    std::vector<std::vector<std::uint8_t>> out(static_cast<std::size_t>(size_));
    for (std::size_t r = 0; r < out.size(); ++r)
      out[r].assign(all.begin() + displs[r], all.begin() + displs[r] + counts[r]);
    return out;
  }

  void barrier() override {
    MPI_Request req;
    MPI_Ibarrier(comm_, &req);
    wait_request(req, "barrier");
  }

  [[noreturn]] void abort(std::string_view message) override {
    std::fprintf(stderr, "spo: rank %d of %d aborts the run: %.*s\n", rank_, size_, static_cast<int>(message.size()),
                 message.data());
    std::fflush(stderr);
    MPI_Abort(comm_, 1);
    std::abort();  // MPI_Abort does not return; this is for implementations that do
  }

 private:
  /// Polls req until it completes; aborts the run past the timeout.
  void wait_request(MPI_Request& req, const char* what) {
    const auto start = std::chrono::steady_clock::now();
    for (std::int64_t polls = 0;; ++polls) {
      int done = 0;
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done) return;
      if (seconds_since(start) > timeout_s_)
        abort(std::string(what) + " timed out after " + seconds_text(timeout_s_) +
              " s (another rank failed, hangs or runs a different number of collectives)");
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  /// The two-phase deterministic all-reduce (see the class comment), progressed by test() and wait().
  struct AllReduce final : PendingState {
    AllReduce(MpiCommunicator& c, void* data, std::size_t n, Dtype d, ReduceOp op)
        : comm(c), data(static_cast<std::uint8_t*>(data)), n(n), d(d), op(op) {
      const auto w = static_cast<std::size_t>(c.size_), es = dtype_size(d);
      counts.resize(w);
      displs.resize(w);
      for (std::size_t r = 0; r < w; ++r) {
        const std::size_t lo = n * r / w, hi = n * (r + 1) / w;
        displs[r] = detail::to_count(lo, "all_reduce");
        counts[r] = detail::to_count(hi - lo, "all_reduce");
      }
      const auto me = static_cast<std::size_t>(c.rank_);
      mine = static_cast<std::size_t>(counts[me]);
      copies.resize(w * mine * es);
      recv_counts.assign(w, counts[me]);
      recv_displs.resize(w);
      for (std::size_t r = 0; r < w; ++r) recv_displs[r] = static_cast<int>(r * mine);
      MPI_Ialltoallv(this->data, counts.data(), displs.data(), detail::mpi_type(d), copies.data(), recv_counts.data(),
                     recv_displs.data(), detail::mpi_type(d), c.comm_, &req);
    }
    bool test() override {
      int done = 0;
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (!done) return false;
      if (phase == 0) {
        // Rank order: the copy of rank 0, then + rank 1, + rank 2, ...
        const auto es = dtype_size(d), me = static_cast<std::size_t>(comm.rank_);
        std::uint8_t* chunk = data + static_cast<std::size_t>(displs[me]) * es;
        std::memcpy(chunk, copies.data(), mine * es);
        for (std::size_t r = 1; r < counts.size(); ++r) combine(chunk, copies.data() + r * mine * es, mine, d, op);
        MPI_Iallgatherv(MPI_IN_PLACE, 0, detail::mpi_type(d), data, counts.data(), displs.data(), detail::mpi_type(d),
                        comm.comm_, &req);
        phase = 1;
        return false;
      }
      return true;
    }
    void wait() override {
      const auto start = std::chrono::steady_clock::now();
      for (std::int64_t polls = 0; !test(); ++polls) {
        if (seconds_since(start) > comm.timeout_s_)
          comm.abort("all_reduce timed out after " + seconds_text(comm.timeout_s_) +
                     " s (another rank failed, hangs or runs a different number of collectives)");
        if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }

    MpiCommunicator& comm;
    std::uint8_t* data;
    std::size_t n;
    Dtype d;
    ReduceOp op;
    std::vector<int> counts, displs, recv_counts, recv_displs;
    std::size_t mine = 0;
    std::vector<std::uint8_t> copies;
    MPI_Request req = MPI_REQUEST_NULL;
    int phase = 0;
  };

  std::shared_ptr<MpiEnvironment> env_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};
static_assert(Communicator<MpiCommunicator>);

}  // namespace spo::dist
