// SPDX-License-Identifier: MIT
// Data parallel on spo::cuda: the NCCL transport at world size 1 (the API, the default stream, device buffers; NCCL
// puts one rank per GPU, so a lent single-GPU machine cannot run two NCCL ranks), and two thread ranks sharing one
// GPU through the host-staged path (device gradients copied to the host, reduced there, copied back), which is how
// several ranks' trainer logic is tested on one GPU.
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "spo/cuda.hpp"
#include "spo/dist/gradient_reducer.hpp"
#include "spo/dist/thread_group.hpp"
#if defined(SPO_WITH_NCCL)
#include "spo/dist/cuda/nccl_communicator.hpp"
#endif

using namespace spo;

namespace {
/// Two trainable device parameters.
struct TwoParams {
  nn::Parameter<double, cuda> a{Shape{3, 4}}, b{Shape{5}};
  template <class F>
  void visit_parameters(F&& f, std::string_view = {}) {
    f("a", a);
    f("b", b);
  }
};

Tensor<double, cuda> on_device(std::vector<double> v) {
  return transfer<cuda>(Tensor<double, cpu>(Shape{static_cast<std::int64_t>(v.size())}, std::move(v)));
}
std::vector<double> on_host(const Tensor<double, cuda>& t) {
  const auto h = transfer<cpu>(t);
  return std::vector<double>(h.data(), h.data() + h.numel());
}
}  // namespace

#if defined(SPO_WITH_NCCL)
TEST_CASE("NCCL at world size 1: all_reduce and broadcast of device buffers, host gathers through the bootstrap") {
  dist::NcclCommunicator c;
  CHECK(c.size() == 1);
  CHECK(c.device_buffers());
  auto x = on_device({1.0, -2.5, 3.25});
  c.all_reduce(std::span<double>(x.data(), 3), dist::ReduceOp::sum);
  CHECK(on_host(x) == std::vector<double>{1.0, -2.5, 3.25});
  auto p = c.start_all_reduce(std::span<double>(x.data(), 3), dist::ReduceOp::mean);  // ncclAvg
  p.wait();
  CHECK(on_host(x) == std::vector<double>{1.0, -2.5, 3.25});
  c.broadcast(std::span<double>(x.data(), 3), 0);
  CHECK(on_host(x) == std::vector<double>{1.0, -2.5, 3.25});
  CHECK(c.all_gather(std::vector<std::uint8_t>{4, 2}) == std::vector<std::vector<std::uint8_t>>{{4, 2}});
  TwoParams m;
  dist::GradientReducer<double, cuda> reducer(m, dist::AnyCommunicator(std::make_shared<dist::NcclCommunicator>()));
  m.a.grad = transfer<cuda>(Tensor<double, cpu>(Shape{3, 4}, std::vector<double>(12, 0.5)));
  reducer.finish();  // one rank: the gradients stay as they are
  CHECK(on_host(m.a.grad) == std::vector<double>(12, 0.5));
}
#endif

TEST_CASE("two thread ranks on one GPU: device gradients averaged through the host, the same bits on both") {
  std::vector<std::vector<double>> a(2), b(2);
  dist::run_ranks(2, [&](dist::AnyCommunicator comm) {
    TwoParams m;
    dist::GradientReducer<double, cuda> reducer(m, comm, dist::BucketOptions{64, 64});  // a and b: two buckets
    const double k = comm.rank() + 1;
    std::vector<double> ga(12), gb(5);
    for (std::size_t i = 0; i < ga.size(); ++i) ga[i] = k * static_cast<double>(i);
    for (std::size_t i = 0; i < gb.size(); ++i) gb[i] = -k;
    m.a.grad = transfer<cuda>(Tensor<double, cpu>(Shape{3, 4}, ga));
    m.b.grad = on_device(gb);
    reducer.finish();
    a[static_cast<std::size_t>(comm.rank())] = on_host(m.a.grad);
    b[static_cast<std::size_t>(comm.rank())] = on_host(m.b.grad);
  });
  for (std::size_t i = 0; i < 12; ++i) CHECK(a[0][i] == 1.5 * static_cast<double>(i));
  CHECK(b[0] == std::vector<double>(5, -1.5));
  CHECK(a[0] == a[1]);
  CHECK(b[0] == b[1]);
}
