// SPDX-License-Identifier: MIT
// Experiment diffusion_dpo (Table 2 baseline): Diffusion-DPO on the offline preference pairs.
#include "spo/experiment/baseline_experiment.hpp"

using namespace spo;

int main(int argc, char** argv) {
  return experiment::run_baseline_experiment<experiment::DiffusionDpoConfig>(
      argc, argv, SPO_SOURCE_DIR, "diffusion_dpo",
      [](const experiment::DiffusionDpoConfig& c, const train::PretrainConfig&, experiment::PolicyModelType& policy,
         experiment::BaseModelType& base, experiment::Evaluator& ev) {
        auto pairs = train::win_lose_pairs<float>(preference::load_pairs(c.pairs));
        std::fprintf(stderr, "diffusion_dpo: %lld pairs (%lld ties dropped)\n", static_cast<long long>(pairs.size()),
                     static_cast<long long>(pairs.ties_dropped));
        return train::DiffusionDpoTraining<experiment::PolicyModelType, experiment::BaseModelType, decltype(ev.ddim)>(
            policy, base, ev.ddim, std::move(pairs), c.loss, c.train, c.seed, io::to_json(c));
      });
}
