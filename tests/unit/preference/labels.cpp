// SPDX-License-Identifier: MIT
#include "spo/preference/labels.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/config.hpp"

using namespace spo;
using namespace spo::preference;

namespace {

/// Scores an image by its mean pixel: a rater other than the oracle, compiled in through the concept.
struct BrightnessRater {
  using scalar_type = double;
  static constexpr std::string_view name = "brightness";
  std::vector<double> score(const Tensor<double, cpu>& images, std::span<const std::string> prompts) {
    SPO_CHECK(static_cast<std::int64_t>(prompts.size()) == images.size(0), "count mismatch");
    const std::int64_t per = images.shape().numel_from(1);
    std::vector<double> s;
    for (std::int64_t b = 0; b < images.size(0); ++b) {
      double m = 0;
      for (std::int64_t i = 0; i < per; ++i) m += images[b * per + i];
      s.push_back(m / double(per));
    }
    return s;
  }
};

struct Nameless {
  using scalar_type = double;
  std::vector<double> score(const Tensor<double, cpu>&, std::span<const std::string>) { return {}; }
};

/// Count of label_a among labels.
double frequency_a(const std::vector<PreferenceLabel>& labels) {
  std::int64_t k = 0;
  for (const auto& l : labels) k += l == label_a;
  return double(k) / double(labels.size());
}

}  // namespace

static_assert(Rater<BrightnessRater>);
static_assert(!Rater<Nameless>);

TEST_CASE("preference_probability is the logistic function of the reward gap over the temperature") {
  // 1 / (1 + e^-1) = 0.7310585786300049, 1 / (1 + e^2) = 0.11920292202211755
  CHECK(preference_probability(1.0, 0.0, 1.0) == doctest::Approx(0.7310585786300049).epsilon(1e-14));
  CHECK(preference_probability(0.0, 1.0, 0.5) == doctest::Approx(0.11920292202211755).epsilon(1e-14));
  CHECK(preference_probability(3.25, 3.25, 2.0) == 0.5);
  // no overflow far in the tails
  CHECK(preference_probability(1e6, 0.0, 1e-3) == 1.0);
  CHECK(preference_probability(0.0, 1e6, 1e-3) == 0.0);
  // the temperature-0 limit
  CHECK(preference_probability(1e-12, 0.0, 0.0) == 1.0);
  CHECK(preference_probability(0.0, 1e-12, 0.0) == 0.0);
  CHECK(preference_probability(2.0, 2.0, 0.0) == 0.5);
  CHECK_THROWS_AS(preference_probability(NAN, 0.0, 1.0), spo::error);
  CHECK_THROWS_AS(preference_probability(0.0, INFINITY, 1.0), spo::error);
  CHECK_THROWS_AS(preference_probability(0.0, 1.0, -1.0), spo::error);
}

TEST_CASE("labels are deterministic per seed and consume one number per pair") {
  const LabelConfig c{1.0, 0.0};
  std::vector<double> r_a(203, 0.0), r_b(203, 0.0);  // p = 0.5 for every pair
  Generator g1{42, 7}, g2{42, 7}, g3{43, 7};
  const auto l1 = draw_labels(r_a, r_b, c, g1);
  const auto l2 = draw_labels(r_a, r_b, c, g2);
  const auto l3 = draw_labels(r_a, r_b, c, g3);
  CHECK(l1 == l2);
  CHECK(l1 != l3);
  CHECK(g1.offset == 7 + (203 + 3) / 4);
  // label i uses uniform number i of the reserved range
  for (std::size_t i = 0; i < l1.size(); ++i) CHECK(l1[i] == (rng::uniform_at(42, 7, i) < 0.5 ? label_a : label_b));
  // a tie still consumes its number: the stream position depends on the count only
  Generator g4{42, 7};
  std::vector<double> tied_a(203, 1.0), tied_b(203, 1.0);
  const auto ties = draw_labels(tied_a, tied_b, LabelConfig{1.0, 0.1}, g4);
  CHECK(g4 == g1);
  for (const auto& l : ties) CHECK(l == label_tie);
}

TEST_CASE("empirical preference frequency matches the Bradley-Terry probability") {
  // (gap, temperature, sigmoid(gap / temperature)) with the probabilities computed by hand.
  struct Case {
    double gap, temperature, p;
  };
  const Case cases[] = {{0.0, 1.0, 0.5},
                        {1.0, 1.0, 0.7310585786300049},
                        {-1.0, 0.5, 0.11920292202211755},
                        {0.3, 0.1, 0.9525741268224334},
                        {0.25, 1.0, 0.5621765008857981}};
  const std::size_t n = 20000;
  std::uint64_t seed = 1000;
  for (const auto& k : cases) {
    Generator gen{seed++, 0};
    INFO("seed " << gen.seed << ", gap " << k.gap << ", temperature " << k.temperature);
    std::vector<double> r_a(n, 2.0 + k.gap), r_b(n, 2.0);
    const double f = frequency_a(draw_labels(r_a, r_b, LabelConfig{k.temperature, 0.0}, gen));
    // 5 binomial standard deviations: a false failure has probability < 1e-6
    CHECK(std::abs(f - k.p) < 5.0 * std::sqrt(k.p * (1 - k.p) / double(n)) + 1e-12);
  }
}

TEST_CASE("ties exactly when the gap is below the margin") {
  const LabelConfig c{1.0, 0.2};
  Generator gen{5, 0};
  const std::vector<double> r_a = {0.0, 0.19, -0.19, 0.2, -0.2, 0.5, 1e-9};
  const std::vector<double> r_b(r_a.size(), 0.0);
  const auto l = draw_labels(r_a, r_b, c, gen);
  CHECK(l[0] == label_tie);
  CHECK(l[1] == label_tie);
  CHECK(l[2] == label_tie);
  CHECK_FALSE(l[3].is_tie());  // |gap| == margin is not below it
  CHECK_FALSE(l[4].is_tie());
  CHECK_FALSE(l[5].is_tie());
  CHECK(l[6] == label_tie);
  CHECK(l[0].y_a == 0.5);
  CHECK(l[0].y_b == 0.5);
  // margin 0: never a tie, even for equal rewards
  Generator g0{5, 0};
  for (const auto& x :
       draw_labels(std::vector<double>(64, 1.0), std::vector<double>(64, 1.0), LabelConfig{1.0, 0.0}, g0))
    CHECK_FALSE(x.is_tie());
}

TEST_CASE("temperature to 0 gives the deterministic ordering") {
  std::vector<double> r_a, r_b;
  for (int i = 0; i < 100; ++i) {
    r_a.push_back(std::sin(i * 1.7));
    r_b.push_back(std::cos(i * 0.9));
  }
  for (double t : {0.0, 1e-12}) {
    Generator gen{9, 0};
    INFO("temperature " << t);
    const auto l = draw_labels(r_a, r_b, LabelConfig{t, 0.0}, gen);
    for (std::size_t i = 0; i < l.size(); ++i) CHECK(l[i] == (r_a[i] > r_b[i] ? label_a : label_b));
  }
  // a large temperature approaches a coin flip
  Generator gen{10, 0};
  std::vector<double> a(20000, 1.0), b(20000, 0.0);
  CHECK(std::abs(frequency_a(draw_labels(a, b, LabelConfig{1e6, 0.0}, gen)) - 0.5) < 5.0 * std::sqrt(0.25 / 20000));
}

TEST_CASE("invalid label configs and inputs are errors") {
  Generator gen{1, 0};
  std::vector<double> a{1.0}, b{0.0}, two{0.0, 1.0};
  CHECK_THROWS_WITH_AS(draw_labels(a, b, LabelConfig{-0.1, 0.0}, gen), doctest::Contains("temperature"), spo::error);
  CHECK_THROWS_AS(draw_labels(a, b, LabelConfig{NAN, 0.0}, gen), spo::error);
  CHECK_THROWS_AS(draw_labels(a, b, LabelConfig{INFINITY, 0.0}, gen), spo::error);
  CHECK_THROWS_WITH_AS(draw_labels(a, b, LabelConfig{1.0, -0.01}, gen), doctest::Contains("tie_margin"), spo::error);
  CHECK_THROWS_AS(draw_labels(a, b, LabelConfig{1.0, NAN}, gen), spo::error);
  CHECK_THROWS_AS(draw_labels(a, two, LabelConfig{1.0, 0.0}, gen), spo::error);
  std::vector<double> nan_reward{NAN};
  CHECK_THROWS_AS(draw_labels(nan_reward, b, LabelConfig{1.0, 0.0}, gen), spo::error);
}

TEST_CASE("label config JSON round trip; a missing key is an error") {
  const auto j = io::json::parse(R"({"temperature": 0.25, "tie_margin": 0.05})");
  const auto c = io::from_json<LabelConfig>(j, "labels.json");
  CHECK(c.temperature == 0.25);
  CHECK(c.tie_margin == 0.05);
  CHECK(io::to_json(c) == j);
  CHECK_THROWS_AS(io::from_json<LabelConfig>(io::json::parse(R"({"temperature": 0.25})"), "labels.json"), spo::error);
}

TEST_CASE("label_pairs scores both images with a compiled-in rater") {
  Tensor<double, cpu> bright(Shape{3, 1, 2, 2}), dark(Shape{3, 1, 2, 2});  // [3, 1, 2, 2]
  for (std::int64_t i = 0; i < 12; ++i) {
    bright[i] = 0.5;
    dark[i] = i < 4 ? 0.5 : -0.5;  // image 0 equal, images 1 and 2 darker
  }
  const std::vector<std::string> prompts{"a bag", "a coat", ""};
  BrightnessRater rater;
  Generator gen{3, 0};
  const auto l = label_pairs(rater, bright, dark, prompts, LabelConfig{0.0, 0.01}, gen);
  REQUIRE(l.size() == 3);
  CHECK(l[0] == label_tie);
  CHECK(l[1] == label_a);
  CHECK(l[2] == label_a);
  Tensor<double, cpu> other(Shape{3, 1, 4, 4});  // [3, 1, 4, 4]
  CHECK_THROWS_AS(label_pairs(rater, bright, other, prompts, LabelConfig{0.0, 0.0}, gen), spo::error);
}
