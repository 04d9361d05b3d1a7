// SPDX-License-Identifier: MIT
/// @brief Preference accuracy by timestep on held-out pairs (SPO's SPM evaluation at t in {0, 251, 501, 701, 951}).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "spo/preference/pairs.hpp"
#include "spo/preference/preference_model.hpp"
#include "spo/spm/noised_prediction.hpp"

namespace spo::spm {

/// The timesteps of SPO's SPM evaluation.
inline const std::vector<std::int64_t> paper_eval_timesteps{0, 251, 501, 701, 951};

/*!
  WHAT THIS REPRESENTS
    What every preference model is shown in the evaluation, computed once: for each timestep t and pair i, the
    base model's one-step x0 predictions of both images noised at t with one noise draw shared by the pair
    (predict_pair_x0); at t = 0 the clean images themselves (docs/algorithm.md 4.2: "t=0 uses the clean image").
    The noise of timestep t is randn from Generator{seed + t}, so every variant sees identical inputs.
!*/
template <Scalar T>
struct ValidationViews {
  std::vector<std::int64_t> timesteps;
  std::vector<PairPredictions<T>> views;  ///< one per timestep
  std::vector<std::string> prompts;
  std::vector<preference::PreferenceLabel> labels;
  std::vector<double> reward_a, reward_b;  ///< the rater's rewards of the clean images
};

template <class Model, class Scheduler>
ValidationViews<typename Model::scalar_type> make_validation_views(Model& base, const Scheduler& ddim,
                                                                   const preference::PreferencePairs& pairs,
                                                                   std::span<const std::int64_t> timesteps,
                                                                   std::uint64_t seed, double guidance,
                                                                   std::int64_t batch = 64) {
  using T = typename Model::scalar_type;
  ValidationViews<T> v;
  v.timesteps.assign(timesteps.begin(), timesteps.end());
  v.prompts = pairs.prompts();
  v.labels = pairs.labels;
  v.reward_a = pairs.reward_a;
  v.reward_b = pairs.reward_b;
  const auto a = cast<T>(pairs.images_a), b = cast<T>(pairs.images_b);
  const std::int64_t n = a.size(0), per = a.numel() / std::max<std::int64_t>(n, 1);
  for (const std::int64_t t : timesteps) {
    if (t == 0) {
      v.views.push_back({a, b});
      continue;
    }
    Generator gen{seed + static_cast<std::uint64_t>(t), 0};
    const auto noise = randn<T>(a.shape(), gen);  // [N, C, R, R]
    PairPredictions<T> out{Tensor<T, cpu>::uninitialized(a.shape()), Tensor<T, cpu>::uninitialized(a.shape())};
    for (std::int64_t i = 0; i < n; i += batch) {
      const std::int64_t m = std::min(batch, n - i);
      Shape s = a.shape();
      s[0] = m;
      auto slice = [&](const Tensor<T, cpu>& src) {
        auto d = Tensor<T, cpu>::uninitialized(s);  // [m, C, R, R]
        std::copy_n(src.data() + i * per, m * per, d.data());
        return d;
      };
      const std::vector<std::int64_t> ts(static_cast<std::size_t>(m), t);
      const auto pr = predict_pair_x0(
          base, ddim, slice(a), slice(b), slice(noise), ts,
          std::span(v.prompts).subspan(static_cast<std::size_t>(i), static_cast<std::size_t>(m)), guidance);
      std::copy_n(pr.x0_a.data(), m * per, out.x0_a.data() + i * per);
      std::copy_n(pr.x0_b.data(), m * per, out.x0_b.data() + i * per);
    }
    v.views.push_back(std::move(out));
  }
  return v;
}

/// Accuracies of a preference model at one timestep: against the drawn labels (ties left out) and against the
/// ordering of the rater's clean-image rewards (the noise-free preference; pairs with equal rewards left out).
struct TimestepAccuracy {
  std::int64_t t = 0;
  double label_accuracy = 0;
  double order_accuracy = 0;
};

template <preference::PreferenceModel PM, Scalar T>
std::vector<TimestepAccuracy> accuracy_by_timestep(PM& pm, const ValidationViews<T>& v) {
  std::vector<TimestepAccuracy> out;
  std::vector<preference::PreferenceLabel> order;
  for (std::size_t i = 0; i < v.reward_a.size(); ++i)
    order.push_back(v.reward_a[i] > v.reward_b[i]   ? preference::label_a
                    : v.reward_a[i] < v.reward_b[i] ? preference::label_b
                                                    : preference::label_tie);
  for (std::size_t k = 0; k < v.timesteps.size(); ++k) {
    const std::vector<std::int64_t> ts(v.prompts.size(), v.timesteps[k]);
    const auto sa = pm.score(v.views[k].x0_a, ts, v.prompts);
    const auto sb = pm.score(v.views[k].x0_b, ts, v.prompts);
    out.push_back({v.timesteps[k], preference::preference_accuracy(v.labels, sa, sb),
                   preference::preference_accuracy(order, sa, sb)});
  }
  return out;
}

}  // namespace spo::spm
