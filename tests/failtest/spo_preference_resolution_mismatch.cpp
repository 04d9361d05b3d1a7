// SPDX-License-Identifier: MIT
// expect: satisfaction of .+SameImageFormat<Model, Preference>
// requires: spo/experiment/spo_experiment.hpp
/// @brief A preference policy built for 64 x 64 images cannot score the 32 x 32 model's samples: the experiment
/// must be rejected naming the concept.
#include "spo/experiment/spo_experiment.hpp"

#ifdef SPO_FAILTEST_CONTROL
using Format = spo::ImageFormat<1, 32>;
#else
using Format = spo::ImageFormat<1, 64>;
#endif

using Preference = spo::spm::Variant<spo::spm::Unconditioned, spo::spm::CleanImage, Format>;
using Experiment = spo::experiment::Spo<Preference, spo::preference::BestWorstCompare, spo::resampler::WinnerChild>;

int main() { return Experiment::needs_checkpoint ? 0 : 1; }
