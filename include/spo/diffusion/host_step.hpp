// SPDX-License-Identifier: MIT
/// @brief The step of a host scheduler on tensors of another device: the latents go to the host, the scheduler's one
/// definition of its step runs there, and the result comes back.
#pragma once

#include <concepts>
#include <optional>

#include "spo/core/device.hpp"
#include "spo/diffusion/concepts.hpp"
#include "spo/tensor/tensor.hpp"
#include "spo/tensor/transfer.hpp"

namespace spo::diffusion {

/*!
  Runs host_step(model_output, x, noise) on host copies of the device tensors and returns its result on D.
  The multistep schedulers (Euler, Euler ancestral, DPM-Solver++, PNDM) keep their step arithmetic in double on the
  host, state included; a step touches only the latents (an SD1.5 512x512 image: 16,384 numbers, an SDXL
  1024x1024 one 65,536), so two transfers per step cost microseconds against a UNet call of milliseconds.
  Noise comes from the same generator (random_normal gives every device the same stream), or the noise tensor is
  copied to the host.
  REQUIRES host_step(const Tensor<T, cpu>&, const Tensor<T, cpu>&, const StepNoise<T, cpu>&) -> Tensor<T, cpu>
!*/
template <Scalar T, Device D, class HostStep>
Tensor<T, D> step_on_host(const Tensor<T, D>& model_output, const Tensor<T, D>& x, const StepNoise<T, D>& noise,
                          HostStep&& host_step) {
  const Tensor<T, cpu> m = transfer<cpu>(model_output);  // x.shape
  const Tensor<T, cpu> h = transfer<cpu>(x);             // x.shape
  std::optional<Tensor<T, cpu>> z;
  StepNoise<T, cpu> host_noise;
  if (noise.tensor()) {
    z = transfer<cpu>(*noise.tensor());  // x.shape
    host_noise = StepNoise<T, cpu>(*z);
  } else if (noise.generator()) {
    host_noise = StepNoise<T, cpu>(*noise.generator());
  }
  return transfer<D>(host_step(m, h, host_noise));
}

/*!
  WHAT THIS REPRESENTS
    The device overloads of a scheduler S whose scale_model_input and step are defined on spo::cpu tensors: on any
    other device both run through the host (step_on_host). S derives from HostStepsOnDevices<S> and brings these
    in with `using HostStepsOnDevices<S>::scale_model_input; using HostStepsOnDevices<S>::step;`.
!*/
template <class S>
struct HostStepsOnDevices {
  template <Scalar T, Device D>
  requires(!std::same_as<D, cpu>) Tensor<T, D> scale_model_input(const Tensor<T, D>& x, double t)
  const { return transfer<D>(static_cast<const S&>(*this).scale_model_input(transfer<cpu>(x), t)); }
  template <Scalar T, Device D>
  requires(!std::same_as<D, cpu>) Tensor<T, D> step(const Tensor<T, D>& model_output, double t, const Tensor<T, D>& x,
                                                    const StepNoise<T, D>& noise = {}) {
    return step_on_host(model_output, x, noise, [&](const auto& m, const auto& h, const auto& z) {
      return static_cast<S&>(*this).step(m, t, h, z);
    });
  }
};

}  // namespace spo::diffusion
