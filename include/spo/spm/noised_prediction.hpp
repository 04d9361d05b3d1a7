// SPDX-License-Identifier: MIT
/// @brief How a preference model sees a denoising step: the frozen base model's one-step x0 prediction of a noised
/// pair.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "spo/nn/grad_mode.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::spm {

/// The x0 predictions of both images of each pair.
template <Scalar T>
struct PairPredictions {
  Tensor<T, cpu> x0_a;  // [P, C, R, R]
  Tensor<T, cpu> x0_b;  // [P, C, R, R]
};

/*!
  WHAT THIS REPRESENTS
    SPO's spm_task.get_noised_imgs (docs/algorithm.md 4.2) for pair i at timestep t_i with noise eps_i shared by both
    images: x_t = add_noise(x0, eps_i, t_i); eps_hat = base model with classifier-free guidance g (the empty prompt as
    the negative); x0_pred = DDIM pred_original_sample(eps_hat, x_t, t_i). One guided pass over all 2P rows.
    t_i == 0 is noised too (the training convention); evaluations that want the clean image at t = 0 pass it directly.
  REQUIRES
    - Model: encode(prompts), guided(x, t [rows], cond, uncond, g); Scheduler: noise_schedule().add_noise, predict
    - images_a, images_b [P, C, R, R]; t and prompts have P entries; noise has the shape of images_a
!*/
template <class Model, class Scheduler, Scalar T>
PairPredictions<T> predict_pair_x0(Model& base, const Scheduler& ddim, const Tensor<T, cpu>& images_a,
                                   const Tensor<T, cpu>& images_b, const Tensor<T, cpu>& noise,
                                   std::span<const std::int64_t> t, std::span<const std::string> prompts,
                                   double guidance) {
  check_same_shape(images_a.shape(), images_b.shape(), "predict_pair_x0 (images a vs b)");
  check_same_shape(images_a.shape(), noise.shape(), "predict_pair_x0 (images vs noise)");
  const std::int64_t p = images_a.size(0), per = images_a.numel() / std::max<std::int64_t>(p, 1);
  SPO_CHECK(static_cast<std::int64_t>(t.size()) == p && static_cast<std::int64_t>(prompts.size()) == p,
            "predict_pair_x0: " << p << " pairs, " << t.size() << " timesteps, " << prompts.size() << " prompts");
  nn::no_grad_guard guard;
  std::vector<std::int64_t> t2(t.begin(), t.end());
  t2.insert(t2.end(), t.begin(), t.end());
  std::vector<std::string> p2(prompts.begin(), prompts.end());
  p2.insert(p2.end(), prompts.begin(), prompts.end());
  Shape s = images_a.shape();
  s[0] = 2 * p;
  auto x0 = Tensor<T, cpu>::uninitialized(s);   // [2P, C, R, R]
  auto eps = Tensor<T, cpu>::uninitialized(s);  // [2P, C, R, R]
  std::copy_n(images_a.data(), p * per, x0.data());
  std::copy_n(images_b.data(), p * per, x0.data() + p * per);
  std::copy_n(noise.data(), p * per, eps.data());
  std::copy_n(noise.data(), p * per, eps.data() + p * per);
  auto x_t = ddim.noise_schedule().add_noise(x0, eps, t2);          // [2P, C, R, R]
  Tensor<T, cpu> tt = Tensor<T, cpu>::uninitialized(Shape{2 * p});  // [2P]
  for (std::int64_t i = 0; i < 2 * p; ++i) tt[i] = static_cast<T>(t2[static_cast<std::size_t>(i)]);
  const std::vector<std::string> empty(static_cast<std::size_t>(2 * p));
  auto u = base.guided(x_t, tt, base.encode(p2), base.encode(empty), guidance);  // [2P, C, R, R]
  auto pred = ddim.predict(u, x_t, t2);
  PairPredictions<T> out{Tensor<T, cpu>::uninitialized(images_a.shape()),
                         Tensor<T, cpu>::uninitialized(images_a.shape())};
  std::copy_n(pred.x0.data(), p * per, out.x0_a.data());
  std::copy_n(pred.x0.data() + p * per, p * per, out.x0_b.data());
  return out;
}

}  // namespace spo::spm
