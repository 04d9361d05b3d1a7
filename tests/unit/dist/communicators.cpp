// SPDX-License-Identifier: MIT
// The communicator contract on in-process ranks: collectives, their reduction order, variable-size exchanges,
// aborts and timeouts that end every rank instead of hanging, launch detection, and the gradient buckets.
#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/dist.hpp"
#include "spo/nn/linear.hpp"
#include "spo/nn/lora.hpp"
#include "spo/train/data_parallel.hpp"

using namespace spo;

static_assert(dist::Communicator<dist::SingleProcess>);
static_assert(dist::Communicator<dist::ThreadCommunicator>);
static_assert(dist::Communicator<dist::AnyCommunicator>);

namespace {
/// Runs f on W ranks; per-rank results are collected under a lock and checked on the calling thread.
template <class R, class F>
std::vector<R> collect(int w, F f, double timeout_s = dist::default_timeout_s) {
  std::vector<R> out(static_cast<std::size_t>(w));
  dist::run_ranks(
      w, [&](dist::AnyCommunicator c) { out[static_cast<std::size_t>(c.rank())] = f(c); }, timeout_s);
  return out;
}
}  // namespace

TEST_CASE("all_reduce: sum, mean, max, min of every element type, the same bits on every rank") {
  const auto r = collect<std::vector<double>>(3, [](dist::AnyCommunicator c) {
    const double k = c.rank();
    std::vector<double> s{k, 1.5 * k}, m{k, 2.0}, mx{k, -k};
    std::vector<float> f{static_cast<float>(k) + 0.25f};
    std::vector<std::int64_t> i{c.rank() + 1, 10};
    c.all_reduce(std::span<double>(s), dist::ReduceOp::sum);
    c.all_reduce(std::span<double>(m), dist::ReduceOp::mean);
    c.all_reduce(std::span<double>(mx), dist::ReduceOp::max);
    c.all_reduce(std::span<float>(f), dist::ReduceOp::sum);
    c.all_reduce(std::span<std::int64_t>(i), dist::ReduceOp::sum);
    auto p = c.start_all_reduce(std::span<double>(m), dist::ReduceOp::min);
    p.wait();
    return std::vector<double>{
        s[0], s[1], m[0], m[1], mx[0], mx[1], f[0], static_cast<double>(i[0]), static_cast<double>(i[1])};
  });
  const std::vector<double> want{3, 4.5, 1, 2, 2, 0, 3.75, 6, 30};
  for (const auto& x : r) CHECK(x == want);
}

TEST_CASE("all_reduce sums in rank order ((x0 + x1) + x2), so every run and every rank gets the same bits") {
  // 1e16 + 1 rounds to 1e16; in rank order the 1 is lost, any other order keeps it.
  const auto r = collect<double>(3, [](dist::AnyCommunicator c) {
    std::vector<double> x{c.rank() == 0 ? 1e16 : c.rank() == 1 ? 1.0 : -1e16};
    c.all_reduce(std::span<double>(x), dist::ReduceOp::sum);
    return x[0];
  });
  for (double v : r) CHECK(v == 0.0);
}

TEST_CASE("broadcast, all_gather of blocks of different sizes (empty ones too), strings and tensor rows") {
  struct Seen {
    std::vector<std::int64_t> bcast, values;
    std::vector<std::string> strings;
    Tensor<double> rows;
  };
  const auto r = collect<Seen>(3, [](dist::AnyCommunicator c) {
    Seen s;
    s.bcast = {c.rank(), c.rank() * 10};
    c.broadcast(std::span<std::int64_t>(s.bcast), 1);
    std::vector<std::int64_t> mine(static_cast<std::size_t>(c.rank()), c.rank());  // rank 0 sends nothing
    s.values = dist::all_gather_values(c, std::span<const std::int64_t>(mine));
    std::vector<std::string> words;
    for (int k = 0; k < c.rank(); ++k) words.push_back(std::string(static_cast<std::size_t>(k), 'a') + "\xc3\xa9");
    s.strings = dist::all_gather_strings(c, words);
    Tensor<double> x(Shape{c.rank(), 2});  // [r, 2]
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = 100 * c.rank() + static_cast<double>(i);
    s.rows = dist::all_gather_rows(c, x, Shape{2});
    c.barrier();
    return s;
  });
  for (const auto& s : r) {
    CHECK(s.bcast == std::vector<std::int64_t>{1, 10});
    CHECK(s.values == std::vector<std::int64_t>{1, 2, 2});
    CHECK(s.strings == std::vector<std::string>{"\xc3\xa9", "\xc3\xa9", "a\xc3\xa9"});
    REQUIRE(s.rows.shape() == Shape{3, 2});
    CHECK(std::vector<double>(s.rows.data(), s.rows.data() + 6) == std::vector<double>{100, 101, 200, 201, 202, 203});
  }
}

TEST_CASE("an exception on one rank aborts every rank with that rank's message, never a hang") {
  std::atomic<int> aborted{0};
  CHECK_THROWS_WITH_AS(
      dist::run_ranks(3,
                      [&](dist::AnyCommunicator c) {
                        if (c.rank() == 1) throw spo::error("out of memory on rank 1");
                        std::vector<double> x{1.0};
                        try {
                          c.all_reduce(std::span<double>(x), dist::ReduceOp::sum);
                        } catch (const dist::comm_error& e) {
                          if (std::string(e.what()).find("out of memory on rank 1") != std::string::npos) ++aborted;
                          throw;
                        }
                      }),
      doctest::Contains("rank 1: out of memory on rank 1"), dist::comm_error);
  CHECK(aborted == 2);
}

TEST_CASE("a collective that waits past the timeout ends the run naming the missing rank") {
  CHECK_THROWS_WITH_AS(dist::run_ranks(
                           2,
                           [](dist::AnyCommunicator c) {
                             if (c.rank() == 1) return;  // never joins
                             std::vector<double> x{1.0};
                             c.all_reduce(std::span<double>(x), dist::ReduceOp::sum);
                           },
                           0.2),
                       doctest::Contains("all_reduce timed out after 0.2 s waiting for rank(s) 1"), dist::comm_error);
}

TEST_CASE("the single-process communicator is the identity; its abort throws the message") {
  dist::AnyCommunicator c;
  std::vector<double> x{2.5};
  c.all_reduce(std::span<double>(x), dist::ReduceOp::mean);
  CHECK(x[0] == 2.5);
  CHECK(c.all_gather(std::vector<std::uint8_t>{1, 2}) == std::vector<std::vector<std::uint8_t>>{{1, 2}});
  CHECK_THROWS_WITH_AS(c.abort("stop"), "stop", dist::comm_error);
  CHECK_THROWS_WITH_AS(std::vector<std::int64_t> i{1}; c.all_reduce(std::span<std::int64_t>(i), dist::ReduceOp::mean),
                                                       doctest::Contains("mean of an integer buffer"), spo::error);
}

TEST_CASE("launch detection reads mpirun's, MPICH's and srun's variables and refuses inconsistent launches") {
  auto env = [](std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const char* n) -> const char* {
      const auto it = vars.find(n);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  };
  const auto alone = dist::detect_launch(env({}));
  CHECK(alone.size == 1);
  CHECK(alone.launcher == "none");
  const auto ompi = dist::detect_launch(
      env({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}}));
  CHECK(ompi.launcher == "openmpi");
  CHECK(ompi.size == 4);
  CHECK(ompi.rank == 3);
  CHECK(ompi.local_rank == 1);
  const auto slurm = dist::detect_launch(
      env({{"SLURM_STEP_NUM_TASKS", "8"}, {"SLURM_PROCID", "5"}, {"SLURM_LOCALID", "1"}, {"SLURM_NTASKS", "8"}}));
  CHECK(slurm.launcher == "slurm");
  CHECK(slurm.rank == 5);
  // a batch script (no step) is one process whatever its allocation
  CHECK(dist::detect_launch(env({{"SLURM_NTASKS", "8"}, {"SLURM_PROCID", "0"}})).size == 1);
  CHECK_THROWS_WITH_AS(dist::detect_launch(env({{"OMPI_COMM_WORLD_SIZE", "2"},
                                                {"OMPI_COMM_WORLD_RANK", "0"},
                                                {"SLURM_STEP_NUM_TASKS", "4"},
                                                {"SLURM_PROCID", "0"}})),
                       doctest::Contains("inconsistent launch: openmpi says rank 0 of 2, slurm says rank 0 of 4"),
                       spo::input_error);
  CHECK_THROWS_WITH_AS(dist::detect_launch(env({{"PMI_SIZE", "2"}})), doctest::Contains("PMI_RANK is not"),
                       spo::input_error);
  CHECK_THROWS_WITH_AS(dist::detect_launch(env({{"PMI_SIZE", "2"}, {"PMI_RANK", "two"}})),
                       doctest::Contains("PMI_RANK=\"two\""), spo::input_error);
  CHECK_THROWS_WITH_AS(dist::make_communicator(dist::Backend::single, ompi, false),
                       doctest::Contains("--comm single, but openmpi started 4 ranks"), spo::input_error);
  CHECK_THROWS_WITH_AS(dist::make_communicator(dist::Backend::nccl, alone, false),
                       doctest::Contains("--comm nccl needs --device cuda"), spo::input_error);
  CHECK_THROWS_WITH_AS(dist::parse_backend("gloo"), doctest::Contains("not one of auto, single, mpi, nccl"),
                       spo::input_error);
  CHECK(dist::make_communicator(dist::Backend::automatic, alone, false).name() == "single");
}

namespace {
/// Two LoRA layers in sequence: the trainable parameters (A, B of each) are reported ready in backward.
struct TwoLora {
  nn::LoRA<nn::Linear<double>> a, b;
  TwoLora() : a(make(1)), b(make(2)) {}
  static nn::LoRA<nn::Linear<double>> make(std::uint64_t s) {
    Generator g{s, 0};
    nn::LoRA<nn::Linear<double>> l(6, 6);
    l.reset_parameters(g);
    l.attach(2, 2.0, g);  // freezes the base
    fill_uniform(l.lora_B().value.view(), g, -0.5, 0.5);
    return l;
  }
  Tensor<double> forward(const Tensor<double>& x) { return b.forward(a.forward(x)); }
  void backward(const Tensor<double>& dy) { a.backward(b.backward(dy)); }
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix = {}) {
    a.visit_parameters(f, nn::join_name(prefix, "a"));
    b.visit_parameters(f, nn::join_name(prefix, "b"));
  }
};

std::vector<double> grads(TwoLora& m) {
  std::vector<double> g;
  m.visit_parameters([&](std::string_view, auto& p) {
    if (p.trainable) g.insert(g.end(), p.grad.data(), p.grad.data() + p.grad.numel());
  });
  return g;
}
}  // namespace

TEST_CASE("gradient buckets: reverse parameter order, started during backward, the rank mean written back") {
  struct Seen {
    std::vector<double> own, averaged;
    std::size_t buckets = 0, overlapped = 0;
    std::vector<std::size_t> bytes;
  };
  const auto r = collect<Seen>(2, [](dist::AnyCommunicator c) {
    TwoLora m;
    // 6x2 and 2x6 doubles per adapter: 96 bytes per parameter; 200-byte buckets hold two, the first holds one
    dist::GradientReducer<double, cpu> reducer(m, c, dist::BucketOptions{200, 100});
    Generator g{static_cast<std::uint64_t>(10 + c.rank()), 0};
    const auto x = randn<double>(Shape{3, 6}, g);  // [3, 6] a different batch per rank
    nn::zero_grad(m);
    const auto y = m.forward(x);
    {
      auto sync = reducer.overlap();
      m.backward(y);
    }
    Seen s;
    s.own = grads(m);
    reducer.finish();
    s.averaged = grads(m);
    s.buckets = reducer.bucket_count();
    s.overlapped = reducer.overlapped();
    s.bytes = reducer.bucket_bytes();
    return s;
  });
  CHECK(r[0].buckets == 3);
  CHECK(r[0].bytes == std::vector<std::size_t>{96, 192, 96});
  CHECK(r[0].overlapped == 3);  // every bucket started in backward: LoRA reports its gradients
  REQUIRE(r[0].own.size() == r[0].averaged.size());
  for (std::size_t i = 0; i < r[0].own.size(); ++i)
    CHECK(r[0].averaged[i] == doctest::Approx((r[0].own[i] + r[1].own[i]) / 2).epsilon(1e-15));
  CHECK(r[0].averaged == r[1].averaged);
  CHECK(r[0].own != r[1].own);
}

TEST_CASE("a gradient reported twice in one backward is refused (a layer used twice: no overlap for it)") {
  CHECK_THROWS_WITH_AS(
      dist::run_ranks(2,
                      [](dist::AnyCommunicator c) {
                        TwoLora m;
                        dist::GradientReducer<double, cpu> reducer(m, c, dist::BucketOptions{1 << 20, 1 << 20});
                        Generator g{3, 0};
                        const auto x = randn<double>(Shape{2, 6}, g);
                        nn::zero_grad(m);
                        auto sync = reducer.overlap();
                        m.backward(m.forward(x));
                        m.backward(m.forward(x));
                      }),
      doctest::Contains("reported ready twice in one backward"), dist::comm_error);
}

TEST_CASE("round records: counts summed, other numbers averaged, per-key objects summed, the slowest rank's time") {
  train::RoundRecord rec;
  rec.sum_keys = {"items"};
  const std::vector<std::string> ranks{
      R"({"metrics": {"items": 4, "loss": 1.0, "valid_per_t": {"1": 2, "251": 1}, "name": "a"}, "sample_s": 2.0, "train_s": 1.0})",
      R"({"metrics": {"items": 5, "loss": 2.0, "valid_per_t": {"1": 1, "501": 3}, "name": "a"}, "sample_s": 1.0, "train_s": 3.0})"};
  train::combine_records(ranks, rec);
  CHECK(rec.metrics.at("items").get<std::int64_t>() == 9);
  CHECK(rec.metrics.at("loss").get<double>() == 1.5);
  CHECK(rec.metrics.at("valid_per_t") == nlohmann::json{{"1", 3}, {"251", 1}, {"501", 3}});
  CHECK(rec.metrics.at("name") == "a");
  CHECK(rec.sample_s == 2.0);
  CHECK(rec.train_s == 3.0);
}

TEST_CASE("rank seeds: rank 0 keeps the run's seed, the others get distinct mixed seeds") {
  CHECK(train::rank_seed(42, 0) == 42);
  CHECK(train::rank_seed(42, 1) != 42);
  CHECK(train::rank_seed(42, 1) != 43);
  CHECK(train::rank_seed(42, 1) != train::rank_seed(43, 1));
  CHECK(train::rank_seed(42, 1) != train::rank_seed(42, 2));
}
