// SPDX-License-Identifier: MIT
// The step-wise resampler: its bookkeeping (pairs share their parent, counts per timestep), determinism, policies.
#include "spo/resampler/stepwise.hpp"

#include <cmath>
#include <set>

#include <doctest/doctest.h>

#include "support/train_fixtures.hpp"

using namespace spo;
using test_support::tiny_scheduler;

namespace {
/// A preference model that prefers bright x0 predictions; records what it was shown.
struct BrightnessPM {
  using scalar_type = float;
  static constexpr std::string_view name = "brightness";
  std::vector<std::int64_t> seen_t;
  std::vector<double> score(const Tensor<float>& x0, std::span<const std::int64_t> t, std::span<const std::string> p) {
    REQUIRE(static_cast<std::int64_t>(t.size()) == x0.size(0));
    REQUIRE(p.size() == t.size());
    seen_t.insert(seen_t.end(), t.begin(), t.end());
    return test_support::brightness(x0);
  }
};
static_assert(preference::PreferenceModel<BrightnessPM>);

const std::vector<std::string> prompts{"a photo of a dress", "a photo of a bag", "a sneaker"};
}  // namespace

TEST_CASE("resampler: pairs share their parent, counts per timestep, scores at the child's own timestep") {
  auto m = test_support::tiny_base();
  const auto ddim = tiny_scheduler(5);  // t = 801, 601, 401, 201, 1
  BrightnessPM pm;
  resampler::ResamplerOptions o{3, 1, 0.0, 2.0, 1.0, 0, 1000};
  resampler::StepwiseResampler<BrightnessPM, preference::BestWorstCompare, resampler::RandomChild> rs(o);
  Generator gen{5, 0};
  const auto r = rs.sample(m, ddim, pm, prompts, 8, 1, gen);
  // Levels compared: children at t_2..t_4 and the final x_0: 4 levels x 3 prompts.
  std::int64_t compared = 0;
  for (const auto& [t, n] : r.compared_per_t) {
    CHECK(n == 3);
    compared += n;
  }
  CHECK(compared == 4 * 3);
  CHECK(r.compared_per_t.begin()->first == 1);     // the last parent timestep
  CHECK(r.compared_per_t.rbegin()->first == 601);  // the first branching parent (divert step 1: t_1)
  // Threshold 0: every comparison of distinct scores is valid.
  CHECK(r.pairs.size() == 12);
  CHECK(r.final_images.shape() == Shape{3, 1, 8, 8});
  CHECK(r.final_scores.size() == 9);
  // The preference model saw each level's own timestep, then t = 0 for the final children.
  const std::set<std::int64_t> seen(pm.seen_t.begin(), pm.seen_t.end());
  CHECK(seen == std::set<std::int64_t>{0, 1, 201, 401});
  // Winner and loser of each item are different children.
  const std::int64_t per = 64;
  for (std::int64_t i = 0; i < r.pairs.size(); ++i) {
    double diff = 0;
    for (std::int64_t j = 0; j < per; ++j) diff += std::abs(r.pairs.x_win[i * per + j] - r.pairs.x_lose[i * per + j]);
    CHECK(diff > 0);
    CHECK(r.pairs.gap[static_cast<std::size_t>(i)] > 0);
  }
  // Same seed, same round.
  Generator gen2{5, 0};
  BrightnessPM pm2;
  const auto r2 = rs.sample(m, ddim, pm2, prompts, 8, 1, gen2);
  CHECK(max_abs_diff<float>(r.final_images.view(), r2.final_images.view()) == 0.0);
  CHECK(r2.pairs.t == r.pairs.t);
  CHECK(gen2.offset == gen.offset);
}

TEST_CASE("resampler: threshold, timestep range and continuation policies") {
  auto m = test_support::tiny_base();
  const auto ddim = tiny_scheduler(5);
  BrightnessPM pm;
  // A threshold above every gap keeps nothing, but still counts the comparisons.
  resampler::ResamplerOptions strict{3, 1, 0.999, 2.0, 1.0, 0, 1000};
  Generator g1{5, 0};
  const auto none =
      resampler::StepwiseResampler<BrightnessPM, preference::BestWorstCompare, resampler::RandomChild>(strict).sample(
          m, ddim, pm, prompts, 8, 1, g1);
  CHECK(none.pairs.size() == 0);
  CHECK(none.compared_per_t.size() == 4);
  // Only parents in [201, 601] are recorded.
  resampler::ResamplerOptions range{3, 1, 0.0, 2.0, 1.0, 201, 601};
  Generator g2{5, 0};
  const auto part =
      resampler::StepwiseResampler<BrightnessPM, preference::BestWorstCompare, resampler::RandomChild>(range).sample(
          m, ddim, pm, prompts, 8, 1, g2);
  for (auto t : part.pairs.t) CHECK((t >= 201 && t <= 601));
  CHECK(part.pairs.size() == 9);
  // Continuing from the winner gives brighter final images than continuing from the loser (same seed).
  resampler::ResamplerOptions o{3, 1, 0.0, 2.0, 1.0, 0, 1000};
  Generator gw{6, 0}, gl{6, 0};
  const auto win =
      resampler::StepwiseResampler<BrightnessPM, preference::BestWorstCompare, resampler::WinnerChild>(o).sample(
          m, ddim, pm, prompts, 8, 1, gw);
  const auto lose =
      resampler::StepwiseResampler<BrightnessPM, preference::BestWorstCompare, resampler::LoserChild>(o).sample(
          m, ddim, pm, prompts, 8, 1, gl);
  double bw = 0, bl = 0;
  for (std::int64_t i = 0; i < win.final_images.numel(); ++i) {
    bw += win.final_images[i];
    bl += lose.final_images[i];
  }
  CHECK(bw > bl);
}

TEST_CASE("resampler: invalid options are clear errors before any work") {
  using resampler::ResamplerOptions;
  CHECK_THROWS_WITH_AS(resampler::validate(ResamplerOptions{1, 1, 0.3, 2.0, 1.0, 0, 1000}, 20),
                       doctest::Contains("resampler.k: (children per step) must be >= 2, got 1"), spo::error);
  CHECK_THROWS_WITH_AS(resampler::validate(ResamplerOptions{4, 20, 0.3, 2.0, 1.0, 0, 1000}, 20),
                       doctest::Contains("resampler.divert_start_step: must be in [0, 20)"), spo::error);
  CHECK_THROWS_WITH_AS(resampler::validate(ResamplerOptions{4, 4, 1.0, 2.0, 1.0, 0, 1000}, 20),
                       doctest::Contains("resampler.threshold: must be in [0, 1)"), spo::error);
  CHECK_THROWS_WITH_AS(resampler::validate(ResamplerOptions{4, 4, -0.1, 2.0, 1.0, 0, 1000}, 20),
                       doctest::Contains("resampler.threshold: must be in [0, 1)"), spo::error);
  CHECK_THROWS_WITH_AS(resampler::validate(ResamplerOptions{4, 4, 0.3, 2.0, 0.0, 0, 1000}, 20),
                       doctest::Contains("resampler.eta: must be finite and > 0"), spo::error);
  CHECK_THROWS_WITH_AS(resampler::validate(ResamplerOptions{4, 4, 0.3, 2.0, 1.0, 500, 100}, 20),
                       doctest::Contains("resampler.t_max: must be >= t_min = 500, got 100"), spo::error);
  CHECK_NOTHROW(resampler::validate(ResamplerOptions{4, 4, 0.3, 5.0, 1.0, 0, 1000}, 20));
}
