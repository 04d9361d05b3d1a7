// SPDX-License-Identifier: MIT
// Experiment d3po (Table 2 baseline): D3PO with the rater's preference of the final images.
#include "spo/experiment/baseline_experiment.hpp"

using namespace spo;

int main(int argc, char** argv) {
  return experiment::run_baseline_experiment<experiment::D3poConfig>(
      argc, argv, SPO_SOURCE_DIR, "d3po",
      [](const experiment::D3poConfig& c, const train::PretrainConfig& b, experiment::PolicyModelType& policy,
         experiment::BaseModelType& base, experiment::Evaluator& ev) {
        return train::D3poTraining<experiment::PolicyModelType, experiment::BaseModelType, decltype(ev.ddim),
                                   preference::OracleRater<float>>(policy, base, ev.ddim, ev.rater, c.sampling, c.loss,
                                                                   c.train, experiment::image_channels, b.resolution,
                                                                   c.seed, io::to_json(c));
      });
}
