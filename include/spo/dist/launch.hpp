// SPDX-License-Identifier: MIT
/// @brief How the program was launched (mpirun, srun, or alone) and the communicator that goes with it.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "spo/core/error.hpp"
#include "spo/dist/any_communicator.hpp"
#include "spo/dist/single_process.hpp"

#if defined(SPO_WITH_MPI)
#include "spo/dist/mpi_communicator.hpp"
#endif
#if defined(SPO_WITH_NCCL)
#include "spo/dist/cuda/nccl_communicator.hpp"
#endif

namespace spo::dist {

/// What the launcher's environment says about this process: which launcher, the world size, this rank and its rank
/// on its node (which GPU it takes).
struct LaunchInfo {
  std::string launcher = "none";  ///< "none", "openmpi", "pmi" (MPICH/Intel MPI), "slurm"
  int size = 1, rank = 0, local_rank = 0;
};

using Environment = std::function<const char*(const char*)>;

namespace detail {
inline std::optional<int> env_int(const Environment& env, const char* name) {
  const char* v = env(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  SPO_EXPECT(end && *end == '\0' && x >= 0 && x < (1 << 24),
             "environment variable " << name << "=\"" << v << "\" is not a rank or a size");
  return static_cast<int>(x);
}
}  // namespace detail

/*!
  ENSURES
    - reads Open MPI's OMPI_COMM_WORLD_{SIZE,RANK,LOCAL_RANK}, MPICH/Intel MPI's PMI_{SIZE,RANK} (MPI_LOCALRANKID)
      and Slurm's SLURM_STEP_NUM_TASKS / SLURM_PROCID / SLURM_LOCALID (set by srun for the tasks of a step; a batch
      script itself is one process)
    - throws spo::input_error when two launchers disagree on the size or the rank (e.g. mpirun inside an srun step
      of another size), naming both
!*/
inline LaunchInfo detect_launch(const Environment& env = [](const char* n) { return std::getenv(n); }) {
  std::optional<LaunchInfo> found;
  auto consider = [&](const char* launcher, const char* size, const char* rank, const char* local) {
    const auto s = detail::env_int(env, size), r = detail::env_int(env, rank);
    if (!s) return;
    SPO_EXPECT(r.has_value(), size << " is set but " << rank << " is not: an inconsistent launch environment");
    SPO_EXPECT(*s >= 1 && *r < *s, size << "=" << *s << " and " << rank << "=" << *r << " are inconsistent");
    LaunchInfo info{launcher, *s, *r, detail::env_int(env, local).value_or(0)};
    if (!found) {
      found = info;
      return;
    }
    SPO_EXPECT(found->size == info.size && found->rank == info.rank,
               "inconsistent launch: " << found->launcher << " says rank " << found->rank << " of " << found->size
                                       << ", " << launcher << " says rank " << info.rank << " of " << info.size
                                       << " (a launcher started inside another one's step?)");
  };
  consider("openmpi", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK");
  consider("pmi", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID");
  consider("slurm", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID");
  return found.value_or(LaunchInfo{});
}

/// Which transport: auto (single when launched alone, else mpi on the CPU and nccl on spo::cuda), or one by name.
enum class Backend { automatic, single, mpi, nccl };

inline Backend parse_backend(std::string_view s) {
  if (s == "auto") return Backend::automatic;
  if (s == "single") return Backend::single;
  if (s == "mpi") return Backend::mpi;
  if (s == "nccl") return Backend::nccl;
  throw input_error("--comm: \"" + std::string(s) + "\" is not one of auto, single, mpi, nccl");
}

inline constexpr bool built_with_mpi =
#if defined(SPO_WITH_MPI)
    true;
#else
    false;
#endif
inline constexpr bool built_with_nccl =
#if defined(SPO_WITH_NCCL)
    true;
#else
    false;
#endif

/*!
  ENSURES
    - the communicator of this process for `backend`, from the launch environment `info` and whether the model runs
      on a GPU; the collective timeout is timeout_s (SPO_COMM_TIMEOUT overrides the default where the caller reads it)
    - throws spo::input_error, before any collective, for: several ranks with a build without MPI; single with
      several ranks; nccl on the CPU or without NCCL; an MPI world whose size is not the launcher's (srun without
      --mpi=pmix starts tasks that each see a world of one)
!*/
inline AnyCommunicator make_communicator(Backend backend, const LaunchInfo& info, bool on_gpu,
                                         double timeout_s = default_timeout_s) {
  if (backend == Backend::automatic)
    backend = info.size == 1 ? Backend::single : (on_gpu ? Backend::nccl : Backend::mpi);
  SPO_EXPECT(backend != Backend::single || info.size == 1,
             "--comm single, but " << info.launcher << " started " << info.size << " ranks");
  SPO_EXPECT(backend != Backend::nccl || on_gpu, "--comm nccl needs --device cuda (NCCL reduces GPU buffers)");
  if (backend == Backend::single) {
    auto c = std::make_shared<SingleProcess>();
    c->set_timeout(timeout_s);
    return AnyCommunicator(c);
  }
#if defined(SPO_WITH_NCCL)
  if (backend == Backend::nccl && info.size == 1) {  // one GPU, no launcher: NCCL at world size 1
    auto single = std::make_shared<SingleProcess>();
    single->set_timeout(timeout_s);
    return AnyCommunicator(std::make_shared<NcclCommunicator>(single, 0));
  }
#endif
  SPO_EXPECT(built_with_mpi, info.launcher << " started " << info.size
                                           << " ranks, but this binary was built without MPI (SPO_WITH_MPI is off: "
                                              "install libopenmpi-dev and reconfigure)");
#if defined(SPO_WITH_MPI)
  auto mpi = std::make_shared<MpiCommunicator>();
  mpi->set_timeout(timeout_s);
  SPO_EXPECT(mpi->size() == info.size,
             info.launcher << " started " << info.size << " ranks but MPI sees a world of " << mpi->size()
                           << " (with srun, pass --mpi=pmix so that the tasks form one MPI world)");
  if (backend == Backend::mpi) return AnyCommunicator(mpi);
#if defined(SPO_WITH_NCCL)
  return AnyCommunicator(std::make_shared<NcclCommunicator>(mpi, info.local_rank));
#else
  throw input_error("--comm nccl, but this binary was built without NCCL (SPO_WITH_CUDA is off)");
#endif
#else
  throw input_error("unreachable: MPI backend without MPI");
#endif
}

}  // namespace spo::dist
