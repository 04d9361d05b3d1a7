// SPDX-License-Identifier: MIT
#include "spo/preference/rater.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include <doctest/doctest.h>

#include "spo/io/config.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/judge/training.hpp"

#include <unistd.h>

using namespace spo;
using namespace spo::preference;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t resolution = 32;
constexpr std::int64_t n_test = 300;
constexpr std::uint64_t noise_seed = 20240611;

const OracleRaterConfig default_config{1.0, 1.0, 1.0};

judge::Classifier<float> load_judge() {
  Generator gen{0, 0};
  auto net = judge::make_classifier<float>(32, gen);
  io::load_state_dict(net, io::load_safetensors(fs::path(SPO_SOURCE_DIR) / "models/judge_train/judge.safetensors"));
  return net;
}

/// One rater for the whole file: statistics from the first 100 training images of each class.
OracleRater<float>& shared_rater() {
  static OracleRater<float> rater = [] {
    auto net = load_judge();
    auto stats = compute_feature_stats(net, data::load_fashion_mnist(data::Split::train), resolution, 100);
    return OracleRater<float>(std::move(net), std::move(stats), default_config);
  }();
  return rater;
}

struct TestImages {
  Tensor<float, cpu> x;  // [n, 1, R, R]
  std::vector<int> labels;
  std::vector<std::string> prompts;
};

const TestImages& test_images() {
  static TestImages t = [] {
    auto d = data::load_fashion_mnist(data::Split::test);
    std::vector<std::int64_t> idx(n_test);
    std::iota(idx.begin(), idx.end(), std::int64_t{0});
    TestImages r{data::to_tensor<float>(d, idx, resolution), {}, {}};
    for (auto i : idx) {
      r.labels.push_back(d.labels[static_cast<std::size_t>(i)]);
      r.prompts.push_back(text::fashion_prompt(r.labels.back(), static_cast<std::size_t>(i) % 4));
    }
    return r;
  }();
  return t;
}

Tensor<float, cpu> add_noise(const Tensor<float, cpu>& x, double sigma, std::uint64_t stream) {
  Tensor<float, cpu> y = x;
  for (std::int64_t i = 0; i < y.numel(); ++i)
    y[i] += static_cast<float>(sigma * rng::normal_at(noise_seed, stream << 32, static_cast<std::uint64_t>(i)));
  return y;
}

/// (2r+1)^2 box blur per image with edge replication.
Tensor<float, cpu> box_blur(const Tensor<float, cpu>& x, std::int64_t r) {
  Tensor<float, cpu> y(x.shape());  // [n, 1, R, R]
  const std::int64_t h = x.size(2), w = x.size(3);
  for (std::int64_t b = 0; b < x.size(0); ++b)
    for (std::int64_t i = 0; i < h; ++i)
      for (std::int64_t j = 0; j < w; ++j) {
        double acc = 0;
        for (std::int64_t di = -r; di <= r; ++di)
          for (std::int64_t dj = -r; dj <= r; ++dj) {
            const std::int64_t ii = std::clamp(i + di, std::int64_t{0}, h - 1);
            const std::int64_t jj = std::clamp(j + dj, std::int64_t{0}, w - 1);
            acc += x[(b * h + ii) * w + jj];
          }
        y[(b * h + i) * w + j] = static_cast<float>(acc / double((2 * r + 1) * (2 * r + 1)));
      }
  return y;
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }

/// Fraction of images i with a[i] > b[i].
double wins(const std::vector<double>& a, const std::vector<double>& b) {
  std::int64_t k = 0;
  for (std::size_t i = 0; i < a.size(); ++i) k += a[i] > b[i];
  return double(k) / double(a.size());
}

void report(const char* what, const OracleRater<float>::Parts& p) {
  std::printf("%-34s R %9.4f  A %9.4f  Q %9.4f  E %9.5f\n", what, mean(p.reward), mean(p.alignment), mean(p.quality),
              mean(p.range));
}

}  // namespace

static_assert(Rater<OracleRater<float>>);
static_assert(Rater<OracleRater<double>>);

TEST_CASE("prompt_class parses every template of every class, and only those") {
  for (int c = 0; c < 10; ++c)
    for (std::size_t t = 0; t < text::fashion_templates.size(); ++t)
      CHECK(prompt_class(text::fashion_prompt(c, t)) == c);
  CHECK(prompt_class("A Photo of a T-Shirt/Top") == 0);
  CHECK(prompt_class("a shirt") == 6);  // not the "shirt" inside "t-shirt/top"
  CHECK(prompt_class("ankle boot") == 9);
  CHECK(prompt_class("") == no_class);
  CHECK(prompt_class("   ") == no_class);
  CHECK_THROWS_WITH_AS(prompt_class("a photo of a cat"), doctest::Contains("\"a photo of a cat\""), spo::error);
  CHECK_THROWS_WITH_AS(prompt_class("a dressing gown"), doctest::Contains("names no"), spo::error);
  CHECK_THROWS_WITH_AS(prompt_class("a bag and a coat"), doctest::Contains("two classes"), spo::error);
}

TEST_CASE("rater config: validation and JSON round trip") {
  CHECK_NOTHROW(validate(default_config));
  CHECK_THROWS_AS(validate(OracleRaterConfig{-1.0, 1.0, 0.0}), spo::error);
  CHECK_THROWS_AS(validate(OracleRaterConfig{0.0, 0.0, 1.0}), spo::error);
  CHECK_THROWS_AS(validate(OracleRaterConfig{1.0, NAN, 0.0}), spo::error);
  const auto j = io::json::parse(R"({"align_weight": 1.0, "quality_weight": 0.5, "range_weight": 2.0})");
  const auto c = io::from_json<OracleRaterConfig>(j, "rater.json");
  CHECK(c.quality_weight == 0.5);
  CHECK(io::to_json(c) == j);
  CHECK_THROWS_AS(io::from_json<OracleRaterConfig>(io::json::parse(R"({"align_weight": 1.0})"), "rater.json"),
                  spo::error);
}

TEST_CASE("measured reward figures: real > noisy > noise, sharp > blurred, right prompt > wrong prompt") {
  auto& rater = shared_rater();
  const auto& t = test_images();
  const auto real = rater.score_parts(t.x, t.prompts);
  const auto noisy_01 = rater.score_parts(add_noise(t.x, 0.1, 1), t.prompts);
  const auto noisy_03 = rater.score_parts(add_noise(t.x, 0.3, 2), t.prompts);
  Tensor<float, cpu> zero(t.x.shape());
  const auto pure_noise = rater.score_parts(add_noise(zero, 1.0, 3), t.prompts);
  const auto blur_1 = rater.score_parts(box_blur(t.x, 1), t.prompts);
  const auto blur_2 = rater.score_parts(box_blur(t.x, 2), t.prompts);
  std::vector<std::string> wrong, empty(t.prompts.size());
  for (std::size_t i = 0; i < t.labels.size(); ++i) wrong.push_back(text::fashion_prompt((t.labels[i] + 5) % 10, 0));
  const auto wrong_prompt = rater.score_parts(t.x, wrong);
  const auto unconditional = rater.score_parts(t.x, empty);
  Tensor<float, cpu> blank(t.x.shape());
  for (std::int64_t i = 0; i < blank.numel(); ++i) blank[i] = -1.0f;
  const auto background = rater.score_parts(blank, t.prompts);
  Tensor<float, cpu> over = t.x;
  for (std::int64_t i = 0; i < over.numel(); ++i) over[i] *= 1.5f;
  const auto overrange = rater.score_parts(over, t.prompts);

  report("real, right prompt", real);
  report("real + N(0, 0.1^2)", noisy_01);
  report("real + N(0, 0.3^2)", noisy_03);
  report("pure noise N(0, 1)", pure_noise);
  report("3x3 box blur", blur_1);
  report("5x5 box blur", blur_2);
  report("real, wrong-class prompt", wrong_prompt);
  report("real, empty prompt", unconditional);
  report("blank background", background);
  report("real x 1.5 (out of range)", overrange);
  const double w_noisy_01 = wins(real.reward, noisy_01.reward), w_noisy_03 = wins(real.reward, noisy_03.reward);
  const double w_noise = wins(noisy_03.reward, pure_noise.reward), w_blur_1 = wins(real.reward, blur_1.reward);
  const double w_blur_2 = wins(blur_1.reward, blur_2.reward), w_wrong = wins(real.reward, wrong_prompt.reward);
  std::printf(
      "paired wins: real>noisy0.1 %.3f real>noisy0.3 %.3f noisy0.3>noise %.3f real>blur3 %.3f "
      "blur3>blur5 %.3f right>wrong %.3f\n",
      w_noisy_01, w_noisy_03, w_noise, w_blur_1, w_blur_2, w_wrong);

  // Q is about -log 2 on real images: d2 averages per-feature z^2, which is 1 in expectation on real data.
  CHECK(mean(real.quality) == doctest::Approx(-std::log(2.0)).epsilon(0.15));
  // the reward orders degradations as a person would
  CHECK(mean(real.reward) > mean(noisy_01.reward));
  CHECK(mean(noisy_01.reward) > mean(noisy_03.reward));
  CHECK(mean(noisy_03.reward) > mean(pure_noise.reward));
  CHECK(mean(real.reward) > mean(blur_1.reward));
  CHECK(mean(blur_1.reward) > mean(blur_2.reward));
  CHECK(mean(real.reward) > mean(wrong_prompt.reward) + 5.0);
  CHECK(mean(real.reward) > mean(background.reward) + 5.0);
  CHECK(mean(real.reward) > mean(overrange.reward));
  // the realism part alone orders them too (it is not only the judge's confidence)
  CHECK(mean(real.quality) > mean(noisy_03.quality));
  CHECK(mean(noisy_03.quality) > mean(pure_noise.quality));
  CHECK(mean(real.quality) > mean(blur_1.quality));
  CHECK(mean(blur_1.quality) > mean(blur_2.quality));
  CHECK(mean(real.quality) > mean(wrong_prompt.quality));
  CHECK(mean(real.quality) > mean(background.quality));
  // per image, paired with its own degraded copy
  CHECK(w_noisy_01 > 0.55);
  CHECK(w_noisy_03 > 0.9);
  CHECK(w_noise > 0.95);
  CHECK(w_blur_1 > 0.9);
  CHECK(w_blur_2 > 0.9);
  CHECK(w_wrong > 0.95);
  // the empty prompt rates against the judge's argmax class
  const auto predicted = judge::predict(rater.judge(), t.x);
  for (std::size_t i = 0; i < predicted.size(); ++i) CHECK(unconditional.cls[i] == predicted[i]);
}

TEST_CASE("reward parts against independent computations") {
  auto& rater = shared_rater();
  const auto& t = test_images();
  constexpr std::int64_t m = 8;
  Tensor<float, cpu> x(Shape{m, 1, resolution, resolution});  // [m, 1, R, R]
  std::copy_n(t.x.data(), x.numel(), x.data());
  const std::vector<std::string> prompts(t.prompts.begin(), t.prompts.begin() + m);
  const auto p = rater.score_parts(x, prompts);
  // A: log-softmax of the whole network's forward pass (not the child-by-child run of judge_forward)
  auto logits = [&] {
    nn::no_grad_guard g;
    return rater.judge().forward(x);  // [m, 10]
  }();
  for (std::int64_t i = 0; i < m; ++i) {
    double z = 0;
    for (std::int64_t k = 0; k < 10; ++k) z += std::exp(double(logits[i * 10 + k]));
    CHECK(p.alignment[i] == doctest::Approx(double(logits[i * 10 + t.labels[i]]) - std::log(z)).epsilon(1e-5));
    CHECK(p.cls[i] == t.labels[i]);
  }
  // features: the first w of them are the spatial means of "features.0"
  const auto o = judge_forward(rater.judge(), x);
  REQUIRE(o.depths == std::vector<std::int64_t>{32, 64, 128, 128});
  auto h0 = [&] {
    nn::no_grad_guard g;
    return rater.judge().get<0>().forward(x);  // [m, 32, R, R]
  }();
  const std::int64_t f_dim = o.features.size(1), plane = resolution * resolution;
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t c = 0; c < 32; ++c) {
      double s = 0;
      for (std::int64_t j = 0; j < plane; ++j) s += h0[(i * 32 + c) * plane + j];
      CHECK(o.features[i * f_dim + c] == doctest::Approx(s / double(plane)).epsilon(1e-5));
    }
  // E: half the pixels at 1.5 -> (1/2) * 0.5^2 = 0.125; the judge sees the clamped image
  Tensor<float, cpu> half = x, clamped = x;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    half[i] = (i % 2) ? 1.5f : -1.0f;
    clamped[i] = (i % 2) ? 1.0f : -1.0f;
  }
  const auto ph = rater.score_parts(half, prompts), pc = rater.score_parts(clamped, prompts);
  for (std::int64_t i = 0; i < m; ++i) {
    CHECK(ph.range[i] == doctest::Approx(0.125).epsilon(1e-12));
    CHECK(pc.range[i] == 0.0);
    CHECK(ph.alignment[i] == pc.alignment[i]);
    CHECK(ph.quality[i] == pc.quality[i]);
    CHECK(ph.reward[i] == doctest::Approx(pc.reward[i] - 0.125).epsilon(1e-12));
  }
  // the weights come from the config; scores do not depend on the batch size (up to float rounding)
  OracleRater<float> weighted(rater.judge(), rater.stats(), OracleRaterConfig{2.0, 0.5, 3.0}, 3);
  const auto pw = weighted.score_parts(half, prompts);
  for (std::int64_t i = 0; i < m; ++i) {
    CHECK(pw.alignment[i] == doctest::Approx(ph.alignment[i]).epsilon(1e-5));
    CHECK(pw.quality[i] == doctest::Approx(ph.quality[i]).epsilon(1e-5));
    CHECK(pw.reward[i] == doctest::Approx(2.0 * pw.alignment[i] + 0.5 * pw.quality[i] - 3.0 * 0.125).epsilon(1e-12));
  }
  CHECK(weighted.score(half, prompts) == pw.reward);
}

TEST_CASE("rater input errors name the problem") {
  auto& rater = shared_rater();
  Tensor<float, cpu> x(Shape{2, 1, resolution, resolution});  // [2, 1, R, R]
  const std::vector<std::string> one{"a bag"}, two{"a bag", "a photo of a unicorn"};
  CHECK_THROWS_WITH_AS(rater.score(x, one), doctest::Contains("2 images but 1 prompts"), spo::error);
  CHECK_THROWS_WITH_AS(rater.score(x, two), doctest::Contains("\"a photo of a unicorn\""), spo::error);
  Tensor<float, cpu> small(Shape{2, 1, 28, 28});  // [2, 1, 28, 28]
  const std::vector<std::string> ok{"a bag", "a coat"};
  CHECK_THROWS_WITH_AS(rater.score(small, ok), doctest::Contains("[2, 1, 28, 28]"), spo::error);
  x[5] = NAN;
  CHECK_THROWS_WITH_AS(rater.score(x, ok), doctest::Contains("non-finite"), spo::error);
}

TEST_CASE("feature statistics: safetensors cache round trip, tied to the judge") {
  auto& rater = shared_rater();
  const auto dir = fs::temp_directory_path() / ("spo_test_rater_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const auto path = dir / "stats.safetensors";
  save_feature_stats(path, rater.stats());
  const auto back = load_feature_stats(path);
  CHECK(back.count == rater.stats().count);
  CHECK(back.depths == rater.stats().depths);
  CHECK(back.resolution == resolution);
  CHECK(back.images_per_class == 100);
  CHECK(back.judge_fingerprint == rater.stats().judge_fingerprint);
  REQUIRE(back.mean.shape() == rater.stats().mean.shape());
  for (std::int64_t i = 0; i < back.mean.numel(); ++i) {
    CHECK(back.mean[i] == rater.stats().mean[i]);
    CHECK(back.var[i] == rater.stats().var[i]);
  }
  // a cache written for this judge is used as is (its counts were edited to tell it apart)
  auto edited = rater.stats();
  edited.count[0] = 12345;
  save_feature_stats(path, edited);
  const auto used = feature_stats_for(rater.judge(), path, data::fashion_mnist_default_dir, resolution, 100);
  CHECK_FALSE(used.computed);
  CHECK(used.stats.count[0] == 12345);
  // ... but one for another per-class cap is recomputed in memory; the stored file is an input and stays as it was
  const auto before = io::read_file_bytes(path);
  const auto fresh = feature_stats_for(rater.judge(), path, data::fashion_mnist_default_dir, resolution, 3);
  CHECK(fresh.computed);
  CHECK(fresh.reason.find("images_per_class 100") != std::string::npos);
  CHECK(fresh.stats.count == std::vector<std::int64_t>(10, 3));
  CHECK(io::read_file_bytes(path) == before);
  // a missing file is not created
  const auto missing = dir / "missing.safetensors";
  CHECK(feature_stats_for(rater.judge(), missing, data::fashion_mnist_default_dir, resolution, 3).computed);
  CHECK_FALSE(fs::exists(missing));
  // a cap above the images of a class is a config error, not "every image"
  CHECK_THROWS_WITH_AS(feature_stats_for(rater.judge(), missing, data::fashion_mnist_default_dir, resolution, 7000),
                       doctest::Contains("rater.images_per_class: 7000 exceeds the 6000 training images of class 0"),
                       spo::config_error);
  // statistics of another judge are refused
  Generator gen{99, 0};
  auto other = judge::make_classifier<float>(32, gen);
  CHECK(judge_fingerprint(other) != rater.stats().judge_fingerprint);
  CHECK_THROWS_WITH_AS(OracleRater<float>(other, rater.stats(), default_config), doctest::Contains("judge"),
                       spo::error);
  fs::remove_all(dir);
}
