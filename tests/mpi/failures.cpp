// SPDX-License-Identifier: MIT
// Run under `mpirun -np 2` with one argument (tests/mpi/CMakeLists.txt): how a data-parallel run ends when one rank
// fails. "throw": rank 1 throws mid-run, the guarded main aborts every rank with its message. "kill": rank 1 dies by
// SIGKILL, the launcher ends the job. "hang": rank 1 never joins the next collective, rank 0 aborts past the timeout.
// In every mode the job must end with an error, never hang; the test script checks the exit code, the message and
// the time.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "spo/experiment/command_line.hpp"

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  return spo::experiment::run_guarded(argv[0], [&](spo::dist::AnyCommunicator& comm) {
    comm = spo::dist::make_communicator(spo::dist::Backend::mpi, spo::dist::detect_launch(), false, 3.0);
    std::vector<double> x{1.0};
    comm.all_reduce(std::span<double>(x), spo::dist::ReduceOp::sum);  // every rank is up
    if (comm.rank() == 1) {
      if (mode == "throw") throw spo::error("injected failure on rank 1");
      if (mode == "kill") std::raise(SIGKILL);
      if (mode == "hang") std::this_thread::sleep_for(std::chrono::seconds(120));
    }
    comm.all_reduce(std::span<double>(x), spo::dist::ReduceOp::sum);  // rank 0 waits here for rank 1
    std::printf("rank %d finished: the failure was not noticed\n", comm.rank());
    return 0;
  });
}
