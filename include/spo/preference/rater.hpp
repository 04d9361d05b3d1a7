// SPDX-License-Identifier: MIT
/// @brief Raters (the stand-in for human raters): the Rater concept and the default OracleRater reward R(x, prompt).
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/hana/define_struct.hpp>

#include "spo/core/error.hpp"
#include "spo/data/fashion_mnist.hpp"
#include "spo/io/model_files.hpp"
#include "spo/io/safetensors.hpp"
#include "spo/judge/classifier.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/preference/concepts.hpp"
#include "spo/text/prompts.hpp"

namespace spo::preference {

/// Weights of the oracle reward (see OracleRater); every key is required in a config.
struct OracleRaterConfig {
  BOOST_HANA_DEFINE_STRUCT(OracleRaterConfig, (double, align_weight), (double, quality_weight), (double, range_weight));
};

inline void validate(const OracleRaterConfig& c, std::string_view key = "rater.weights") {
  const std::string k(key);
  SPO_CONFIG_CHECK(std::isfinite(c.align_weight) && c.align_weight >= 0, k + ".align_weight",
                   "must be finite and >= 0, got " << c.align_weight);
  SPO_CONFIG_CHECK(std::isfinite(c.quality_weight) && c.quality_weight >= 0, k + ".quality_weight",
                   "must be finite and >= 0, got " << c.quality_weight);
  SPO_CONFIG_CHECK(std::isfinite(c.range_weight) && c.range_weight >= 0, k + ".range_weight",
                   "must be finite and >= 0, got " << c.range_weight);
  SPO_CONFIG_CHECK(c.align_weight > 0 || c.quality_weight > 0, k + ".quality_weight",
                   "align_weight and quality_weight are both 0: the reward would ignore the image");
}

/// The oracle rater: the training judge, its stored per-class feature statistics (an input: when missing or stale
/// the statistics of the first images_per_class training images of each class are computed, and a run keeps them in
/// its own output directory) and the reward weights.
struct RaterSection {
  BOOST_HANA_DEFINE_STRUCT(RaterSection, (io::ModelFiles, judge), (std::string, feature_stats),
                           (std::int64_t, images_per_class), (OracleRaterConfig, weights));
};

/// The class of an unconditional (empty) prompt.
inline constexpr int no_class = -1;

/*!
  ENSURES
    - returns the Fashion-MNIST class whose phrase (text::class_phrase, e.g. "ankle boot", "t-shirt/top") occurs in
      `prompt` as whole words (bounded by the string ends or spaces; case-insensitive), as in every
      text::fashion_prompt(label, template); the held-out templates parse like the training ones
    - returns no_class for an empty or all-space prompt (the unconditional prompt of classifier-free guidance)
    - throws spo::error naming the prompt when no class phrase or more than one class phrase occurs
!*/
inline int prompt_class(std::string_view prompt) {
  std::string p(prompt);
  for (auto& ch : p) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (std::all_of(p.begin(), p.end(), [](char ch) { return ch == ' '; })) return no_class;
  int found = no_class;
  for (int c = 0; c < static_cast<int>(data::fashion_mnist_classes.size()); ++c) {
    const std::string phrase = text::class_phrase(c);
    for (std::size_t at = p.find(phrase); at != std::string::npos; at = p.find(phrase, at + 1)) {
      const std::size_t end = at + phrase.size();
      if ((at == 0 || p[at - 1] == ' ') && (end == p.size() || p[end] == ' ')) {
        SPO_CHECK(found == no_class || found == c, "prompt \"" << prompt << "\" names two classes, \""
                                                               << text::class_phrase(found) << "\" and \"" << phrase
                                                               << "\"");
        found = c;
      }
    }
  }
  SPO_CHECK(found != no_class, "prompt \"" << prompt << "\" names no Fashion-MNIST class");
  return found;
}

/// The judge's logits [B, 10] and its multi-depth pooled features [B, F] from one forward pass.
template <Scalar T>
struct JudgeOutput {
  Tensor<T, cpu> logits;             // [B, 10]
  Tensor<T, cpu> features;           // [B, F], F = w + 2w + 4w + 4w
  std::vector<std::int64_t> depths;  ///< channels per depth, summing to F
};

/// Runs the children "features.0" .. "pool" and then "head" of a judge::Classifier, without gradients. The features
/// are the global average pools (torch: h.mean((2, 3))) of the outputs of "features.0" .. "features.3", concatenated;
/// the last block is the judge's penultimate ("pool") features.
template <Scalar T>
JudgeOutput<T> judge_forward(judge::Classifier<T>& net, const Tensor<T, cpu>& x) {
  nn::no_grad_guard guard;
  nn::GlobalAvgPool<T, cpu> pool;
  std::array<Tensor<T, cpu>, 4> pooled;
  auto h = net.template get<0>().forward(x);               // [B, w, R, R]
  pooled[0] = pool.forward(h);                             // [B, w]
  h = net.template get<1>().forward(h);                    // [B, 2w, R/2, R/2]
  pooled[1] = pool.forward(h);                             // [B, 2w]
  h = net.template get<2>().forward(h);                    // [B, 4w, R/4, R/4]
  pooled[2] = pool.forward(h);                             // [B, 4w]
  h = net.template get<3>().forward(h);                    // [B, 4w, R/8, R/8]
  pooled[3] = net.template get<4>().forward(h);            // [B, 4w]
  auto logits = net.template get<5>().forward(pooled[3]);  // [B, 10]
  const std::int64_t b = x.size(0);
  JudgeOutput<T> out{std::move(logits), {}, {}};
  std::int64_t f_dim = 0;
  for (const auto& p : pooled) {
    out.depths.push_back(p.size(1));
    f_dim += p.size(1);
  }
  out.features = Tensor<T, cpu>::uninitialized(Shape{b, f_dim});  // [B, F]
  for (std::int64_t r = 0; r < b; ++r) {
    T* dst = out.features.data() + r * f_dim;
    for (const auto& p : pooled) dst = std::copy_n(p.data() + r * p.size(1), p.size(1), dst);
  }
  return out;
}

/// A 64-bit FNV-1a hash of every parameter name and value of the judge, as 16 hex digits: ties cached feature
/// statistics to the weights they were computed with.
template <Scalar T>
std::string judge_fingerprint(judge::Classifier<T>& net) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  };
  net.visit_parameters(
      [&](std::string_view name, nn::Parameter<T, cpu>& p) {
        mix(name.data(), name.size());
        for (std::int64_t i = 0; i < p.value.numel(); ++i) {
          const float v = static_cast<float>(p.value[i]);
          mix(&v, sizeof v);
        }
      },
      {});
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

/*!
  WHAT THIS REPRESENTS
    Per-class statistics of the judge's pooled features (judge_forward) over real training images: mean and variance
    (population, i.e. divided by the count) of each of the F features, per class.
!*/
struct FeatureStats {
  Tensor<double, cpu> mean;          // [K, F]
  Tensor<double, cpu> var;           // [K, F]
  std::vector<std::int64_t> count;   // [K]
  std::vector<std::int64_t> depths;  ///< channels per judge depth, summing to F
  std::int64_t resolution = 0;
  std::int64_t images_per_class = 0;  ///< the cap used (0: every image)
  std::string judge_fingerprint;

  std::int64_t classes() const { return mean.size(0); }
  std::int64_t features() const { return mean.size(1); }
};

/// Statistics of the first `images_per_class` images of each class of `d` (0: all images), at `resolution`.
template <Scalar T>
FeatureStats compute_feature_stats(judge::Classifier<T>& net, const data::FashionMnist& d, std::int64_t resolution,
                                   std::int64_t images_per_class, std::int64_t batch = 256) {
  constexpr std::int64_t k = static_cast<std::int64_t>(data::fashion_mnist_classes.size());
  SPO_CONFIG_CHECK(images_per_class >= 0, "rater.images_per_class",
                   "must be >= 0 (0: every image), got " << images_per_class);
  SPO_CHECK(batch >= 1, "batch must be >= 1, got " << batch);
  std::vector<std::int64_t> idx, count(k, 0);
  for (std::int64_t i = 0; i < d.count; ++i) {
    const int c = d.labels[static_cast<std::size_t>(i)];
    if (images_per_class == 0 || count[c] < images_per_class) {
      idx.push_back(i);
      ++count[c];
    }
  }
  if (images_per_class > 0)
    for (std::int64_t c = 0; c < k; ++c)
      SPO_CONFIG_CHECK(count[c] == images_per_class, "rater.images_per_class",
                       images_per_class << " exceeds the " << count[c] << " training images of class " << c << " ("
                                        << data::fashion_mnist_classes[static_cast<std::size_t>(c)]
                                        << "); use at most that, or 0 for every image");
  std::vector<std::vector<double>> feats(static_cast<std::size_t>(k));  // per class, [n_c, F]
  std::int64_t f_dim = 0;
  std::vector<std::int64_t> depths;
  for (std::size_t i = 0; i < idx.size(); i += static_cast<std::size_t>(batch)) {
    const auto m = std::min<std::size_t>(static_cast<std::size_t>(batch), idx.size() - i);
    auto x = data::to_tensor<T>(d, std::span(idx).subspan(i, m), resolution);  // [m, 1, R, R]
    auto out = judge_forward(net, x);
    f_dim = out.features.size(1);
    depths = out.depths;
    for (std::size_t r = 0; r < m; ++r) {
      auto& dst = feats[d.labels[static_cast<std::size_t>(idx[i + r])]];
      for (std::int64_t f = 0; f < f_dim; ++f) dst.push_back(static_cast<double>(out.features[r * f_dim + f]));
    }
  }
  FeatureStats s{Tensor<double, cpu>(Shape{k, f_dim}),
                 Tensor<double, cpu>(Shape{k, f_dim}),
                 count,
                 depths,
                 resolution,
                 images_per_class,
                 judge_fingerprint(net)};
  for (std::int64_t c = 0; c < k; ++c) {
    SPO_CHECK(count[c] >= 2, "class " << c << " has " << count[c] << " images; feature statistics need at least 2");
    const auto& v = feats[static_cast<std::size_t>(c)];
    const double n = static_cast<double>(count[c]);
    for (std::int64_t f = 0; f < f_dim; ++f) {
      double sum = 0, sq = 0;
      for (std::int64_t r = 0; r < count[c]; ++r) sum += v[static_cast<std::size_t>(r * f_dim + f)];
      const double mu = sum / n;
      for (std::int64_t r = 0; r < count[c]; ++r) {
        const double e = v[static_cast<std::size_t>(r * f_dim + f)] - mu;
        sq += e * e;
      }
      s.mean[c * f_dim + f] = mu;
      s.var[c * f_dim + f] = sq / n;
    }
  }
  return s;
}

/// Writes the statistics as safetensors: "mean" [K, F] and "var" [K, F], "count" [K] and "depths" [4] (all F64),
/// with the resolution, the per-class cap and the judge fingerprint in the metadata.
inline void save_feature_stats(const std::filesystem::path& path, const FeatureStats& s) {
  io::NamedTensors t;
  t.source = path.string();
  t.set<double>("mean", s.mean);
  t.set<double>("var", s.var);
  Tensor<double, cpu> count(Shape{static_cast<std::int64_t>(s.count.size())});  // [K]
  for (std::size_t c = 0; c < s.count.size(); ++c)
    count[static_cast<std::int64_t>(c)] = static_cast<double>(s.count[c]);
  t.set<double>("count", count);
  Tensor<double, cpu> depths(Shape{static_cast<std::int64_t>(s.depths.size())});  // [4]
  for (std::size_t d = 0; d < s.depths.size(); ++d)
    depths[static_cast<std::int64_t>(d)] = static_cast<double>(s.depths[d]);
  t.set<double>("depths", depths);
  t.metadata = {{"resolution", std::to_string(s.resolution)},
                {"images_per_class", std::to_string(s.images_per_class)},
                {"judge_fingerprint", s.judge_fingerprint}};
  io::save_safetensors(path, t);
}

inline FeatureStats load_feature_stats(const std::filesystem::path& path) {
  const auto t = io::load_safetensors(path);
  FeatureStats s;
  s.mean = t.get<double>("mean");
  s.var = t.get<double>("var");
  const auto count = t.get<double>("count");
  const auto depths = t.get<double>("depths");
  SPO_EXPECT(s.mean.rank() == 2 && s.var.shape() == s.mean.shape() && count.rank() == 1 &&
                 count.size(0) == s.mean.size(0) && depths.rank() == 1,
             path << ": feature statistics have shapes mean " << s.mean.shape() << ", var " << s.var.shape()
                  << ", count " << count.shape() << ", depths " << depths.shape()
                  << " (expected [K, F], [K, F], [K], [D])");
  for (std::int64_t c = 0; c < count.size(0); ++c) s.count.push_back(static_cast<std::int64_t>(count[c]));
  std::int64_t f_dim = 0;
  for (std::int64_t d = 0; d < depths.size(0); ++d) {
    s.depths.push_back(static_cast<std::int64_t>(depths[d]));
    f_dim += s.depths.back();
  }
  SPO_EXPECT(f_dim == s.mean.size(1),
             path << ": depths sum to " << f_dim << " but there are " << s.mean.size(1) << " features");
  for (const char* key : {"resolution", "images_per_class", "judge_fingerprint"})
    SPO_EXPECT(t.metadata.contains(key), path.string() << ": metadata key \"" << key << "\" is missing");
  auto count_of = [&](const char* key) {
    const std::string& v = t.metadata.at(key);
    std::int64_t n = -1;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    SPO_EXPECT(ec == std::errc() && end == v.data() + v.size() && n >= 0,
               path.string() << ": metadata \"" << key << "\" = \"" << v << "\" is not a count");
    return n;
  };
  s.resolution = count_of("resolution");
  s.images_per_class = count_of("images_per_class");
  s.judge_fingerprint = t.metadata.at("judge_fingerprint");
  return s;
}

/// Feature statistics and where they came from.
struct FeatureStatsSource {
  FeatureStats stats;
  bool computed = false;  ///< true: `stored` was missing or stale, the statistics were computed now
  std::string reason;     ///< why they were computed ("" when read from `stored`)
};

/*!
  ENSURES
    - the statistics stored at `stored` when they were computed for this judge, resolution and cap; otherwise the
      statistics computed from the training split in `data_dir`, with `computed` set and the reason
    - never writes: `stored` is an input of the run (a caller that wants to keep computed statistics writes them
      into its own output directory)
!*/
template <Scalar T>
FeatureStatsSource feature_stats_for(judge::Classifier<T>& net, const std::filesystem::path& stored,
                                     const std::filesystem::path& data_dir, std::int64_t resolution,
                                     std::int64_t images_per_class) {
  std::string reason = stored.string() + " does not exist";
  if (std::filesystem::exists(stored)) {
    auto s = load_feature_stats(stored);
    if (s.judge_fingerprint != judge_fingerprint(net))
      reason = stored.string() + " was computed for another judge";
    else if (s.resolution != resolution)
      reason = stored.string() + " was computed at resolution " + std::to_string(s.resolution);
    else if (s.images_per_class != images_per_class)
      reason = stored.string() + " was computed with images_per_class " + std::to_string(s.images_per_class);
    else
      return {std::move(s), false, {}};
  }
  auto s =
      compute_feature_stats(net, data::load_fashion_mnist(data::Split::train, data_dir), resolution, images_per_class);
  return {std::move(s), true, std::move(reason)};
}

/// Relative variance floor: sigma^2_{c,f} >= floor * (mean of sigma^2_{c,.} over the features of f's depth), so a
/// feature that is nearly constant on real images of a class cannot dominate the distance.
inline constexpr double feature_variance_floor = 1e-2;

/*!
  WHAT THIS REPRESENTS
    The default oracle rater: a reward a person would agree with, from the training judge (a Fashion-MNIST
    classifier) and the real training data. For an image x shown with prompt p of class c:

      R(x, p) = align_weight * A(x, c) + quality_weight * Q(x, c) - range_weight * E(x)

      A(x, c) = log softmax(judge(clamp(x)))_c                       prompt alignment, in (-inf, 0]
      Q(x, c) = -log(1 + d2),                                        realism against real images of class c
      d2      = (1/D) sum_d (1/F_d) sum_{f in depth d} (phi_f(x) - mu_{c,f})^2 / sigma^2_{c,f}
      E(x)    = (1/N) sum_i max(0, |x_i| - 1)^2                     out-of-range pixels (N = R*R)

    phi(x) [F] are the judge's pooled features of clamp(x, -1, 1) (the image as displayed): the spatial means of each
    of its D = 4 feature units' outputs (judge_forward; F_d = w, 2w, 4w, 4w channels, the last being the penultimate
    "pool" features). mu and sigma^2 are their per-class mean and variance over real training images (FeatureStats;
    sigma^2 floored at feature_variance_floor times its depth's class mean). d2 is a diagonal-Gaussian (Mahalanobis)
    distance, averaged per feature and then over depths so each depth counts equally: about 1 for a real image of
    class c, so Q is about -log 2 there. Shallow depths respond to pixel-level defects (blur, grain), deep ones to
    shape and class; d2 grows for noisy, blurred, broken or wrong-class images, and the log compresses it to a
    perceptual scale comparable with A (a multi-layer realism distance in the spirit of FID and LPIPS, per image).
    An empty prompt (the unconditional prompt) asks for any garment: c is then the judge's argmax class, so A is
    the judge's confidence in its best class. Scores are in double, one per image, independent of the batch.
!*/
template <Scalar T>
class OracleRater {
 public:
  using scalar_type = T;
  static constexpr std::string_view name = "oracle";

  /// The reward and its parts, one entry per image.
  struct Parts {
    std::vector<double> alignment, quality, range, reward;
    std::vector<int> cls;  ///< the class each image was rated against
  };

  OracleRater(judge::Classifier<T> judge, FeatureStats stats, const OracleRaterConfig& config, std::int64_t batch = 256)
      : judge_(std::move(judge)), stats_(std::move(stats)), config_(config), batch_(batch) {
    validate(config_);
    SPO_CHECK(batch_ >= 1, "rater batch must be >= 1, got " << batch_);
    SPO_CHECK(stats_.classes() == static_cast<std::int64_t>(data::fashion_mnist_classes.size()),
              "feature statistics hold " << stats_.classes() << " classes, expected 10");
    SPO_CHECK(stats_.judge_fingerprint == judge_fingerprint(judge_),
              "feature statistics were computed with judge " << stats_.judge_fingerprint << ", not with this judge ("
                                                             << judge_fingerprint(judge_) << ")");
    SPO_CHECK(!stats_.depths.empty(), "feature statistics name no depths");
    const std::int64_t f_dim = stats_.features();
    inv_var_ = Tensor<double, cpu>(stats_.var.shape());  // [K, F]
    for (std::int64_t c = 0; c < stats_.classes(); ++c) {
      std::int64_t first = 0;
      for (const std::int64_t n : stats_.depths) {
        const double* v = stats_.var.data() + c * f_dim + first;
        const double mean_var = std::accumulate(v, v + n, 0.0) / static_cast<double>(n);
        SPO_CHECK(mean_var > 0, "feature statistics of class " << c << " have zero variance");
        for (std::int64_t f = 0; f < n; ++f)
          inv_var_[c * f_dim + first + f] = 1.0 / std::max(v[f], feature_variance_floor * mean_var);
        first += n;
      }
    }
  }

  std::vector<double> score(const Tensor<T, cpu>& images, std::span<const std::string> prompts) {
    return score_parts(images, prompts).reward;
  }

  Parts score_parts(const Tensor<T, cpu>& images, std::span<const std::string> prompts) {
    SPO_CHECK(images.rank() == 4 && images.size(1) == 1 && images.size(2) == stats_.resolution &&
                  images.size(3) == stats_.resolution,
              "rater expects images [B, 1, " << stats_.resolution << ", " << stats_.resolution << "], got "
                                             << images.shape());
    const std::int64_t n = images.size(0), per = images.shape().numel_from(1);
    SPO_CHECK(static_cast<std::int64_t>(prompts.size()) == n,
              "rater got " << n << " images but " << prompts.size() << " prompts");
    const nn::NetworkScope metered("rater", nn::Pass::forward, n);  // the labels' source, not charged compute
    Parts out;
    for (const auto& p : prompts) out.cls.push_back(prompt_class(p));
    const std::int64_t f_dim = stats_.features();
    for (std::int64_t i = 0; i < n; i += batch_) {
      const std::int64_t m = std::min(batch_, n - i);
      auto x = Tensor<T, cpu>::uninitialized(Shape{m, 1, images.size(2), images.size(3)});  // [m, 1, R, R]
      for (std::int64_t j = 0; j < m * per; ++j) {
        const T v = images[i * per + j];
        SPO_CHECK(std::isfinite(static_cast<double>(v)), "rater: image " << i + j / per << " has a non-finite pixel");
        x[j] = std::clamp(v, T(-1), T(1));
      }
      const auto o = judge_forward(judge_, x);
      SPO_CHECK(o.features.size(1) == f_dim,
                "judge features have " << o.features.size(1) << " channels, statistics " << f_dim);
      const std::int64_t k = o.logits.size(1);
      for (std::int64_t r = 0; r < m; ++r) {
        const T* l = o.logits.data() + r * k;
        int c = out.cls[static_cast<std::size_t>(i + r)];
        if (c == no_class) c = static_cast<int>(std::max_element(l, l + k) - l);
        const double lmax = static_cast<double>(*std::max_element(l, l + k));
        double z = 0;
        for (std::int64_t q = 0; q < k; ++q) z += std::exp(static_cast<double>(l[q]) - lmax);
        const double align = static_cast<double>(l[c]) - lmax - std::log(z);
        double d2 = 0;
        std::int64_t f = 0;
        for (const std::int64_t depth : stats_.depths) {
          double z2 = 0;
          for (const std::int64_t end = f + depth; f < end; ++f) {
            const double e = static_cast<double>(o.features[r * f_dim + f]) - stats_.mean[c * f_dim + f];
            z2 += e * e * inv_var_[c * f_dim + f];
          }
          d2 += z2 / static_cast<double>(depth) / static_cast<double>(stats_.depths.size());
        }
        const double quality = -std::log1p(d2);
        double range = 0;
        for (std::int64_t j = 0; j < per; ++j) {
          const double over = std::abs(static_cast<double>(images[(i + r) * per + j])) - 1.0;
          if (over > 0) range += over * over;
        }
        range /= static_cast<double>(per);
        out.cls[static_cast<std::size_t>(i + r)] = c;
        out.alignment.push_back(align);
        out.quality.push_back(quality);
        out.range.push_back(range);
        out.reward.push_back(config_.align_weight * align + config_.quality_weight * quality -
                             config_.range_weight * range);
      }
    }
    return out;
  }

  const OracleRaterConfig& config() const { return config_; }
  const FeatureStats& stats() const { return stats_; }
  judge::Classifier<T>& judge() { return judge_; }

 private:
  judge::Classifier<T> judge_;
  FeatureStats stats_;
  OracleRaterConfig config_;
  std::int64_t batch_;
  Tensor<double, cpu> inv_var_;  // [K, F]
};

}  // namespace spo::preference
