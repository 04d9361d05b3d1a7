// SPDX-License-Identifier: MIT
// Experiment spo_oracle (Table 5, upper bound): SPO with the oracle rater itself scoring the x0 predictions.
#include "spo/experiment/spo_experiment.hpp"

using Experiment =
    spo::experiment::Spo<spo::experiment::OraclePM, spo::preference::BestWorstCompare, spo::resampler::RandomChild>;

int main(int argc, char** argv) { return spo::experiment::run_spo_experiment<Experiment>(argc, argv, SPO_SOURCE_DIR); }
