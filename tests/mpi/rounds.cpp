// SPDX-License-Identifier: MIT
// Run under `mpirun -np 2` (tests/mpi/CMakeLists.txt): the MPI transport's collectives, and the data-parallel
// scenarios of the thread tests on MPI ranks: an SPO round and a Diffusion-DPO round equal one process over the
// union of the ranks' data, the replicas are identical, a resume under 2 ranks is exact; SPM training on 2 ranks.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/dist/mpi_communicator.hpp"
#include "spo/spm/training.hpp"

#include "support/data_parallel_cases.hpp"
#include "support/tiny_model.hpp"

using namespace spo;
using namespace spo::test_support::data_parallel;
namespace fs = std::filesystem;

namespace {
std::shared_ptr<dist::MpiEnvironment> environment;

dist::AnyCommunicator world() {
  auto c = std::make_shared<dist::MpiCommunicator>(environment);
  c->set_timeout(120);
  return dist::AnyCommunicator(c);
}

/// A directory every rank names the same: rank 0's scratch path, broadcast.
fs::path shared_scratch(dist::AnyCommunicator& c, const std::string& name) {
  std::string path;
  if (c.is_root()) {
    path = (fs::temp_directory_path() / ("spo_mpi_" + name + "_" + std::to_string(::getpid()))).string();
    fs::remove_all(path);
    fs::create_directories(path);
  }
  return dist::all_gather_strings(c, {path}).at(0);
}

/// Every rank's value equals rank 0's.
bool same_on_every_rank(dist::AnyCommunicator& c, std::uint64_t v) {
  const auto all = dist::all_gather_values(c, std::span<const std::uint64_t>(&v, 1));
  for (const auto x : all)
    if (x != all.front()) return false;
  return true;
}

std::uint64_t hash_of(const std::vector<double>& w) {
  return dist::detail::fnv1a(0xcbf29ce484222325ull, w.data(), w.size() * sizeof(double));
}
}  // namespace

TEST_CASE("MPI collectives: sum, mean, max, uneven chunks, variable-size gathers, broadcast") {
  auto c = world();
  REQUIRE(c.size() == 2);
  REQUIRE(c.name() == "mpi");
  std::vector<double> x(1001);  // odd: the reduce-scatter chunks differ in size
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>(i) * (c.rank() + 1);
  c.all_reduce(std::span<double>(x), dist::ReduceOp::mean);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(x[i] == 1.5 * static_cast<double>(i));
  std::vector<float> f{static_cast<float>(c.rank()), -static_cast<float>(c.rank())};
  auto p = c.start_all_reduce(std::span<float>(f), dist::ReduceOp::max);
  p.wait();
  CHECK(f == std::vector<float>{1.0f, 0.0f});
  std::vector<std::int64_t> i{c.rank() + 1};
  c.all_reduce(std::span<std::int64_t>(i), dist::ReduceOp::sum);
  CHECK(i[0] == 3);
  std::vector<std::int64_t> mine(static_cast<std::size_t>(c.rank()) * 3, 7);  // rank 0 sends nothing
  CHECK(dist::all_gather_values(c, std::span<const std::int64_t>(mine)) == std::vector<std::int64_t>{7, 7, 7});
  CHECK(dist::all_gather_strings(c, {"r" + std::to_string(c.rank())}) == std::vector<std::string>{"r0", "r1"});
  std::vector<double> b{static_cast<double>(c.rank()) + 0.5};
  c.broadcast(std::span<double>(b), 1);
  CHECK(b[0] == 1.5);
  c.barrier();
}

TEST_CASE("SPO round on 2 MPI ranks == one process over the union of their pairs (double, 1e-12)") {
  auto c = world();
  const auto o = spo_round(c);
  const double err = relative_error(o.weights, o.reference);
  MESSAGE("rank " << c.rank() << ": max relative difference to the union run " << err);
  CHECK(err < 1e-12);
  CHECK(relative_error(o.weights, Replica().lora()) > 1e-6);
  CHECK(same_on_every_rank(c, o.hash));
  CHECK(same_on_every_rank(c, hash_of(o.weights)));
  CHECK(o.metrics.at("items").get<std::int64_t>() == 2 * (o.union_items / 2));
}

TEST_CASE("Diffusion-DPO round on 2 MPI ranks == one process with the doubled batch (double, 1e-12)") {
  auto c = world();
  const auto o = dpo_round(c);
  const double err = relative_error(o.weights, o.reference);
  MESSAGE("rank " << c.rank() << ": max relative difference to the union run " << err);
  CHECK(err < 1e-12);
  CHECK(same_on_every_rank(c, o.hash));
}

TEST_CASE("SPO resume under 2 MPI ranks continues exactly") {
  auto c = world();
  const auto dir = shared_scratch(c, "resume");
  const auto [straight, resumed] = spo_resume(c, dir);
  CHECK(straight == resumed);
  CHECK(same_on_every_rank(c, hash_of(straight)));
  c.barrier();
  if (c.is_root()) fs::remove_all(dir);
}

TEST_CASE("SPM training on 2 MPI ranks: identical replicas, 2 + 2 steps resumed == 4 steps bitwise") {
  using Model = model::FashionModel<float>;
  using V = spm::Variant<spm::StepConditioned, spm::NoisedPrediction, ImageFormat<1, 8>>;
  auto c = world();
  const auto dir = shared_scratch(c, "spm");
  auto pairs = [](std::int64_t n, std::uint64_t s, const char* split) {
    preference::PreferencePairs p;
    p.split = split;
    Generator g{s, 0};
    p.images_a = randn<float>(Shape{n, 1, 8, 8}, g);
    p.images_b = randn<float>(Shape{n, 1, 8, 8}, g);
    for (std::int64_t i = 0; i < n; ++i) {
      p.label.push_back(static_cast<int>(i % 10));
      p.template_index.push_back(0);
      p.seed.push_back(s);
      p.reward_a.push_back(0.1 * static_cast<double>(i));
      p.reward_b.push_back(0.0);
      p.labels.push_back(i % 2 == 0 ? preference::label_a : preference::label_b);
    }
    return p;
  };
  if (c.is_root()) {
    preference::save_pairs(dir / "train.safetensors", pairs(12, 2, "train"));
    preference::save_pairs(dir / "val.safetensors", pairs(4, 3, "validation"));
  }
  c.barrier();
  spm::SpmConfig cfg;
  cfg.seed = 9;
  cfg.output_dir = (dir / "out").string();
  cfg.pairs = {(dir / "train.safetensors").string(), (dir / "val.safetensors").string()};
  cfg.network.image = {8, 1, 4, 16, 1, 2, 8};
  cfg.network.text_width = 16;
  cfg.network.text_heads = 2;
  cfg.network.text_max_length = 6;
  cfg.network.init_logit_scale = std::log(1 / 0.07);
  cfg.eval_timesteps = {0, 501};
  cfg.train = {2, 4, 1e-3, 1, 0.01, 1.0, 1, 2, 2};
  Generator bg{21, 0};
  auto base = model::make_fashion_model<Model>(test_support::tiny_unet, test_support::tiny_text, bg);
  const auto ddim = Replica::make_ddim();
  using Run = spm::SpmTraining<V, Model, Ddim>;
  auto net = [&](std::uint64_t s) {
    Generator g{s + static_cast<std::uint64_t>(c.rank()), 0};  // different on purpose: the broadcast unifies them
    return spm::make_preference_network<V::network<float>>(cfg.network, g);
  };
  auto weights = [](auto& n) {
    std::vector<float> w;
    n.visit_parameters(
        [&](std::string_view, nn::Parameter<float>& p) {
          w.insert(w.end(), p.value.data(), p.value.data() + p.value.numel());
        },
        {});
    return w;
  };
  auto na = net(10);
  Run ra(na, base, ddim, cfg, 3.0, io::to_json(cfg));
  ra.set_communicator(c);
  for (int i = 0; i < 4; ++i) CHECK(std::isfinite(ra.train_step()[0]));
  CHECK(same_on_every_rank(c, dist::parameter_hash(na)));
  auto nb = net(10);
  {
    Run rb(nb, base, ddim, cfg, 3.0, io::to_json(cfg));
    rb.set_communicator(c);
    rb.train_step();
    rb.train_step();
    rb.save(dir / "ckpt.safetensors");
  }
  auto nc = net(10);
  Run rc(nc, base, ddim, cfg, 3.0, io::to_json(cfg));
  rc.set_communicator(c);
  rc.resume(dir / "ckpt.safetensors");
  rc.train_step();
  rc.train_step();
  CHECK(weights(na) == weights(nc));
  c.barrier();
  if (c.is_root()) fs::remove_all(dir);
}

int main(int argc, char** argv) {
  environment = std::make_shared<dist::MpiEnvironment>();
  doctest::Context context(argc, argv);
  const int rank = dist::MpiCommunicator(environment).rank();
  if (rank != 0) context.setOption("out", "/dev/null");  // one report: rank 0's (a failing rank sets the exit code)
  const int failed = context.run();
  int any = failed != 0, total = 0;
  MPI_Allreduce(&any, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (total && !failed) std::fprintf(stderr, "rank %d passed, but another rank failed\n", rank);
  return total != 0;
}
