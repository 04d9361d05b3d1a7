// SPDX-License-Identifier: MIT
// expect: satisfaction of .+SameImageFormat<Model, Preference>
// requires: spo/experiment/spo_experiment.hpp
/// @brief A preference policy built for RGB images cannot score the one-channel Fashion-MNIST model's samples: the
/// experiment must be rejected naming the concept.
#include "spo/experiment/spo_experiment.hpp"

#ifdef SPO_FAILTEST_CONTROL
using Format = spo::FashionImage;
#else
using Format = spo::ImageFormat<3, 32>;
#endif

using Preference = spo::spm::Variant<spo::spm::StepConditioned, spo::spm::NoisedPrediction, Format>;
using Experiment = spo::experiment::Spo<Preference>;

int main() { return Experiment::needs_checkpoint ? 0 : 1; }
