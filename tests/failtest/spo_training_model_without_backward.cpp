// SPDX-License-Identifier: MIT
// expect: satisfaction of 'DiffusionModel<Policy>' \[with Policy = NoBackwardModel\]
// requires: spo/train/spo_training.hpp
/// @brief SPO trains its policy through the guided prediction's backward: a model that can sample (encode, guided)
/// but has no guided_backward must be rejected naming the concept.
#include <span>
#include <string>
#include <vector>

#include "spo/train/spo_training.hpp"

using Tensor = spo::Tensor<float>;

struct NoBackwardModel {
  using scalar_type = float;
  using device_type = spo::cpu;
  Tensor encode(std::span<const std::string> prompts);
  Tensor guided(const Tensor& x_t, double t, const Tensor& cond, const Tensor& uncond, double g);
#ifdef SPO_FAILTEST_CONTROL
  Tensor guided_backward(const Tensor& dy);
#endif
};

struct ConstantPM {
  using scalar_type = float;
  static constexpr std::string_view name = "constant";
  std::vector<double> score(const Tensor& x0, std::span<const std::int64_t>, std::span<const std::string>);
};

using Ddim = spo::diffusion::Ddim<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>;
using Training = spo::train::SpoTraining<NoBackwardModel, NoBackwardModel, Ddim, ConstantPM,
                                         spo::preference::BestWorstCompare, spo::resampler::RandomChild>;

int main() { return Training::loss_options{}.beta > 0 ? 1 : 0; }
