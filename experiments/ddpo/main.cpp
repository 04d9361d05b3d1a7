// SPDX-License-Identifier: MIT
// Experiment ddpo (Table 2 baseline): DDPO_IS with the rater's reward of the final images.
#include "spo/experiment/baseline_experiment.hpp"

using namespace spo;

int main(int argc, char** argv) {
  return experiment::run_baseline_experiment<experiment::DdpoConfig>(
      argc, argv, SPO_SOURCE_DIR, "ddpo",
      [](const experiment::DdpoConfig& c, const train::PretrainConfig& b, experiment::PolicyModelType& policy,
         experiment::BaseModelType&, experiment::Evaluator& ev) {
        return train::DdpoTraining<experiment::PolicyModelType, decltype(ev.ddim), preference::OracleRater<float>>(
            policy, ev.ddim, ev.rater, c.sampling, c.loss, c.stat_tracker, c.train, experiment::image_channels,
            b.resolution, c.seed, io::to_json(c));
      });
}
