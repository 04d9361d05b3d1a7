// SPDX-License-Identifier: MIT
/// @brief AdamW (decoupled weight decay) over the trainable parameters of any visitable object, as torch.optim.AdamW.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include <boost/hana/adapt_struct.hpp>

#include "spo/core/device.hpp"
#include "spo/core/error.hpp"
#include "spo/core/parallel.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/optim/concepts.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::optim {

/// Hyperparameters; defaults are torch.optim.AdamW's.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

/// Per-step scalars of the update, computed in double as torch does in Python, then applied in T.
struct AdamWCoefficients {
  double decay;  // 1 - lr * weight_decay
  double beta1, one_minus_beta1, beta2, one_minus_beta2;
  double bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  double step_size;              // lr / (1 - beta1^t)
  double eps;

  static AdamWCoefficients at_step(const AdamWOptions& o, std::int64_t t) {
    const double bc1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
    return {
        1.0 - o.lr * o.weight_decay, o.beta1, 1.0 - o.beta1, o.beta2, 1.0 - o.beta2, std::sqrt(bc2), o.lr / bc1, o.eps};
  }
};

/*!
  One AdamW step on n elements (CPU), in the order of torch 1.13's _single_tensor_adamw:
    p <- p * (1 - lr wd)
    m <- beta1 m + (1 - beta1) g
    v <- beta2 v + (1 - beta2) g^2
    p <- p - step_size * m / (sqrt(v) / sqrt(1 - beta2^t) + eps),   step_size = lr / (1 - beta1^t)
  The spo::cuda overload (same formula, order and precision) is spo::adamw_update in optim/cuda/optim_kernels.hpp.
!*/
template <Scalar T>
void adamw_update(TensorView<T, cpu> p, TensorView<const T, cpu> g, TensorView<T, cpu> m, TensorView<T, cpu> v,
                  const AdamWCoefficients& c) {
  const T decay = static_cast<T>(c.decay), b1 = static_cast<T>(c.beta1), a1 = static_cast<T>(c.one_minus_beta1);
  const T b2 = static_cast<T>(c.beta2), a2 = static_cast<T>(c.one_minus_beta2);
  const T bc2_sqrt = static_cast<T>(c.bias_correction2_sqrt), eps = static_cast<T>(c.eps);
  const T neg_step = static_cast<T>(-c.step_size);
  T* pp = p.data();
  const T* gp = g.data();
  T* mp = m.data();
  T* vp = v.data();
  const std::int64_t n = p.numel();
  constexpr std::int64_t block = 4096;
  parallel_for(
      0, (n + block - 1) / block,
      [&](std::int64_t b) {
        const std::int64_t end = std::min(n, (b + 1) * block);
        for (std::int64_t i = b * block; i < end; ++i) {
          const T gi = gp[i];
          const T mi = mp[i] * b1 + a1 * gi;
          const T vi = vp[i] * b2 + a2 * gi * gi;
          mp[i] = mi;
          vp[i] = vi;
          const T denom = std::sqrt(vi) / bc2_sqrt + eps;
          pp[i] = pp[i] * decay + neg_step * mi / denom;
        }
      },
      16);
}

/*!
  WHAT THIS REPRESENTS
    torch.optim.AdamW (amsgrad=False, maximize=False) over the trainable parameters of an object with
    visit_parameters, keyed by parameter name. State (exp_avg, exp_avg_sq) is created, zero, for every trainable
    parameter at its first step; frozen parameters are neither updated nor given state. The state lives on D, next
    to the parameters; on spo::cuda the update runs on the device (include spo/cuda.hpp, or
    spo/optim/cuda/optim_kernels.hpp, where AdamW<T, cuda> is used).
  DIFFERENCES FROM TORCH
    One global step count t (torch keeps one per parameter): a parameter first made trainable after t > 0 steps is
    bias-corrected with the global t.
!*/
template <Scalar T, Device D = cpu>
class AdamW {
 public:
  using scalar_type = T;
  using device_type = D;
  static constexpr std::string_view name = "AdamW";

  explicit AdamW(AdamWOptions options = {}) : options_(options) { check_options(options); }

  const AdamWOptions& options() const { return options_; }
  /// New hyperparameters (e.g. a learning-rate schedule); the moments and the step count are kept.
  void set_options(const AdamWOptions& o) {
    check_options(o);
    options_ = o;
  }
  void set_lr(double lr) {
    AdamWOptions o = options_;
    o.lr = lr;
    set_options(o);
  }
  std::int64_t step_count() const { return step_; }

  /// One update of every trainable parameter of `model` from its accumulated gradient.
  template <class Model>
  void step(Model& model) {
    const auto c = AdamWCoefficients::at_step(options_, step_ + 1);
    model.visit_parameters(
        [&](std::string_view name, nn::Parameter<T, D>& p) {
          if (!p.trainable) return;
          SPO_CHECK(p.grad.shape() == p.value.shape(), "AdamW: parameter \"" << name << "\" has gradient shape "
                                                                             << p.grad.shape() << " but value shape "
                                                                             << p.value.shape());
          auto it = state_.find(name);
          if (it == state_.end())
            it =
                state_.emplace(std::string(name), Moments{Tensor<T, D>(p.value.shape()), Tensor<T, D>(p.value.shape())})
                    .first;
          SPO_CHECK(it->second.exp_avg.shape() == p.value.shape(),
                    "AdamW: state of \"" << name << "\" has shape " << it->second.exp_avg.shape()
                                         << " but the parameter has " << p.value.shape());
          if constexpr (std::same_as<D, cpu>) {
            adamw_update<T>(p.value.view(), p.grad.view(), it->second.exp_avg.view(), it->second.exp_avg_sq.view(), c);
          } else {
            // found by argument-dependent lookup: the device's overload (spo/optim/cuda/optim_kernels.hpp for
            // spo::cuda)
            adamw_update(p.value.view(), std::as_const(p.grad).view(), it->second.exp_avg.view(),
                         it->second.exp_avg_sq.view(), c);
          }
        },
        {});
    ++step_;
  }

  OptimizerState<T, D> export_state() const {
    OptimizerState<T, D> s;
    s.step = step_;
    for (const auto& [name, m] : state_) {
      s.tensors.emplace("exp_avg." + name, m.exp_avg);
      s.tensors.emplace("exp_avg_sq." + name, m.exp_avg_sq);
    }
    return s;
  }

  /// Replaces the state. Every entry must belong to a trainable parameter of `model` with its shape, each
  /// parameter has both moments or neither, and nothing else may be present; all checks run before any change.
  template <class Model>
  void import_state(OptimizerState<T, D> s, Model& model) {
    SPO_CHECK(s.step >= 0, "AdamW state: negative step " << s.step);
    std::map<std::string, Moments, std::less<>> next;
    std::set<std::string, std::less<>> used;
    std::string problems;
    model.visit_parameters(
        [&](std::string_view name, nn::Parameter<T, D>& p) {
          const std::string a = "exp_avg." + std::string(name), b = "exp_avg_sq." + std::string(name);
          auto ia = s.tensors.find(a), ib = s.tensors.find(b);
          const bool has_a = ia != s.tensors.end(), has_b = ib != s.tensors.end();
          if (!has_a && !has_b) return;
          if (has_a) used.insert(a);
          if (has_b) used.insert(b);
          if (!p.trainable) {
            problems += " \"" + std::string(name) + "\" is frozen but has state;";
          } else if (has_a != has_b) {
            problems += " \"" + (has_a ? b : a) + "\" is missing;";
          } else if (!(ia->second.shape() == p.value.shape()) || !(ib->second.shape() == p.value.shape())) {
            problems += " \"" + std::string(name) + "\": state shapes " + ia->second.shape().str() + " and " +
                        ib->second.shape().str() + ", parameter " + p.value.shape().str() + ";";
          } else {
            next.emplace(std::string(name), Moments{std::move(ia->second), std::move(ib->second)});
          }
        },
        {});
    for (const auto& [key, unused] : s.tensors)
      if (!used.contains(key)) problems += " unexpected \"" + key + "\";";
    SPO_CHECK(problems.empty(), "AdamW state does not fit the model:" << problems);
    SPO_CHECK(s.step > 0 || next.empty(), "AdamW state: step 0 with non-empty moments");
    state_ = std::move(next);
    step_ = s.step;
  }

 private:
  struct Moments {
    Tensor<T, D> exp_avg, exp_avg_sq;
  };
  static void check_options(const AdamWOptions& o) {
    SPO_CHECK(
        o.lr >= 0 && o.eps >= 0 && o.weight_decay >= 0 && o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
        "AdamW: invalid hyperparameters lr " << o.lr << ", betas (" << o.beta1 << ", " << o.beta2 << "), eps " << o.eps
                                             << ", weight_decay " << o.weight_decay);
  }

  AdamWOptions options_;
  std::map<std::string, Moments, std::less<>> state_;
  std::int64_t step_ = 0;
};

}  // namespace spo::optim

BOOST_HANA_ADAPT_STRUCT(spo::optim::AdamWOptions, lr, beta1, beta2, eps, weight_decay);
