// SPDX-License-Identifier: MIT
// Data-parallel training on in-process ranks (the thread transport): W ranks equal one process over the union of
// their data, the replicas stay identical, a resume under W ranks is exact, and drifted replicas stop the run.
#include <filesystem>
#include <mutex>
#include <vector>

#include <doctest/doctest.h>

#include "spo/dist/thread_group.hpp"
#include "spo/train/ddpo_training.hpp"

#include "support/data_parallel_cases.hpp"
#include "support/train_fixtures.hpp"

using namespace spo;
using namespace spo::test_support::data_parallel;

namespace {
/// Runs scenario on W thread ranks and returns each rank's outcome.
template <class F>
std::vector<Outcome> on_ranks(int w, F scenario) {
  std::vector<Outcome> out(static_cast<std::size_t>(w));
  dist::run_ranks(w, [&](dist::AnyCommunicator comm) { out[static_cast<std::size_t>(comm.rank())] = scenario(comm); });
  return out;
}

void check_against_union(const std::vector<Outcome>& ranks) {
  for (const auto& o : ranks) {
    CHECK(o.weights == ranks[0].weights);  // identical replicas, bitwise
    CHECK(o.hash == ranks[0].hash);
    CHECK(o.reference == ranks[0].reference);
  }
  const double err = relative_error(ranks[0].weights, ranks[0].reference);
  MESSAGE("max relative difference to the single-process run over the union: " << err);
  CHECK(err < 1e-12);
  CHECK(relative_error(ranks[0].weights, Replica().lora()) > 1e-6);  // training moved the adapters
}
}  // namespace

TEST_CASE("SPO round on 2 thread ranks == one process over the union of their pairs (double, 1e-12)") {
  const auto ranks = on_ranks(2, spo_round);
  check_against_union(ranks);
  CHECK(ranks[0].union_items >= 2 * batch);
  // each rank trains on floor(N / 2) of the N gathered pairs; "items" is summed over ranks
  CHECK(ranks[0].metrics.at("items").get<std::int64_t>() == 2 * (ranks[0].union_items / 2));
}

TEST_CASE("SPO round on 3 thread ranks == one process over the union (the remainder of the pairs is dropped)") {
  check_against_union(on_ranks(3, spo_round));
}

TEST_CASE("Diffusion-DPO round on 2 thread ranks == one process with the doubled batch (double, 1e-12)") {
  const auto ranks = on_ranks(2, dpo_round);
  check_against_union(ranks);
  CHECK(ranks[0].metrics.at("pairs").get<std::int64_t>() == 2 * 2 * batch);
}

TEST_CASE("one rank is the run without a communicator, bitwise") {
  const auto one = on_ranks(1, spo_round);
  Replica plain;
  auto t = plain.spo(seed);
  t.run_round();
  CHECK(one[0].weights == plain.lora());
  CHECK(one[0].weights == one[0].reference);
}

TEST_CASE("resume under 2 thread ranks continues exactly; the checkpoint refuses another number of ranks") {
  const auto dir = test_support::scratch("dp_resume");
  std::vector<std::pair<std::vector<double>, std::vector<double>>> out(2);
  dist::run_ranks(
      2, [&](dist::AnyCommunicator comm) { out[static_cast<std::size_t>(comm.rank())] = spo_resume(comm, dir); });
  for (const auto& [straight, resumed] : out) CHECK(straight == resumed);
  CHECK(out[0].first == out[1].first);
  // the 2-rank checkpoint holds both ranks' generators: one rank cannot continue it exactly
  Replica one;
  auto t = one.spo(seed);
  CHECK_THROWS_WITH_AS(t.resume(dir / "checkpoint.safetensors"), doctest::Contains("written by a run of 2 ranks"),
                       spo::input_error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("replicas that drift apart stop the run at the checkpoint, on every rank, before it is written") {
  const auto dir = test_support::scratch("dp_drift");
  std::vector<std::string> errors(2);
  std::mutex m;
  CHECK_THROWS_WITH_AS(dist::run_ranks(2,
                                       [&](dist::AnyCommunicator comm) {
                                         Replica r;
                                         auto t = r.spo(seed);
                                         t.set_communicator(comm);
                                         t.run_round();
                                         if (comm.rank() == 1)
                                           r.policy.visit_parameters([](std::string_view, auto& q) {
                                             if (q.trainable) q.value[0] += 1e-9;
                                           });
                                         try {
                                           t.save(dir / "checkpoint.safetensors");
                                         } catch (const spo::error& e) {
                                           std::lock_guard lock(m);
                                           errors[static_cast<std::size_t>(comm.rank())] = e.what();
                                           throw;
                                         }
                                       }),
                       doctest::Contains("parameters differ at the checkpoint of round 1"), dist::comm_error);
  CHECK(errors[0].find("parameter hashes: rank 0") != std::string::npos);
  CHECK(errors[1].find("parameter hashes: rank 0") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir / "checkpoint.safetensors"));
  std::filesystem::remove_all(dir);
}

namespace {
/// Rewards bright final images (10 x the mean).
struct BrightnessRater {
  using scalar_type = double;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<double>& x, std::span<const std::string> prompts) {
    return BrightnessPM{}.score(x, {}, prompts);
  }
};
}  // namespace

TEST_CASE("DDPO on 2 thread ranks: rewards gathered, the stat trackers and the replicas identical on both ranks") {
  using Ddpo = train::DdpoTraining<Policy, Ddim, BrightnessRater>;
  std::vector<nlohmann::json> state(2);
  std::vector<std::uint64_t> hash(2);
  std::vector<nlohmann::json> metrics(2);
  dist::run_ranks(2, [&](dist::AnyCommunicator comm) {
    Replica r;
    BrightnessRater rater;
    Ddpo t(r.policy, r.ddim, rater, train::TrajectorySection{2.0, 1.0}, loss::DdpoLossOptions{0.2, 5.0},
           loss::StatTrackerOptions{16, 2}, train::DdpoTrainSection{2, 2, 2, {0}, 2, 1, 0.5, 1e-2, 1e-4, 1.0, 1}, 1, 8,
           seed, nlohmann::json::object());
    t.set_communicator(comm);
    auto rec = t.run_round();
    train::reduce_record(comm, rec);
    const auto i = static_cast<std::size_t>(comm.rank());
    t.save_state(state[i]);
    hash[i] = dist::parameter_hash(r.policy);
    metrics[i] = rec.metrics;
  });
  CHECK(state[0] == state[1]);
  CHECK(hash[0] == hash[1]);
  Replica initial;
  CHECK(hash[0] != dist::parameter_hash(initial.policy));
  // 2 prompts x 2 samples per rank, gathered: the tracker saw 8 rewards
  std::size_t seen = 0;
  for (const auto& [prompt, values] : state[0].at("stat_tracker").items()) seen += values.size();
  CHECK(seen == 8);
  CHECK(metrics[0].at("samples").get<std::int64_t>() == 8);
}
