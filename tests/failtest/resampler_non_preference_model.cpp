// SPDX-License-Identifier: MIT
// expect: PreferenceModel<PM>
// requires: spo/resampler/stepwise.hpp
/// @brief The step-wise resampler needs a step preference model (scores of x0 predictions at their timestep): a
/// clean-image scorer with the Rater signature score(images, prompts) must be rejected naming the concept.
#include "spo/resampler/stepwise.hpp"

struct CleanImageScorer {
  using scalar_type = float;
  static constexpr std::string_view name = "clean_scorer";
  std::vector<double> score(const spo::Tensor<float>& images, std::span<const std::string>) {
    return std::vector<double>(static_cast<std::size_t>(images.size(0)), 0.0);
  }
#ifdef SPO_FAILTEST_CONTROL
  std::vector<double> score(const spo::Tensor<float>& x0, std::span<const std::int64_t>, std::span<const std::string>) {
    return std::vector<double>(static_cast<std::size_t>(x0.size(0)), 0.0);
  }
#endif
};

int main() {
  spo::resampler::StepwiseResampler<CleanImageScorer, spo::preference::BestWorstCompare, spo::resampler::RandomChild>
      rs(spo::resampler::ResamplerOptions{4, 4, 0.3, 3.0, 1.0, 0, 1000});
  return rs.options().k;
}
