# SPDX-License-Identifier: MIT
# Dependencies of spo::spo, all from Debian packages (tools/setup.sh installs them).
include(GNUInstallDirs)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)
find_package(OpenMP REQUIRED)
find_package(dnnl CONFIG REQUIRED)
# Optional: Open MPI (libopenmpi-dev) for data parallelism across processes and nodes (spo::mpi).
find_package(MPI COMPONENTS CXX QUIET)
