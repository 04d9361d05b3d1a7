// SPDX-License-Identifier: MIT
/// @brief GroupNorm over [B, C, *spatial] (torch.nn.GroupNorm; keys `weight`, `bias` [C], biased variance), on any
/// device with kernels (the CPU ones here, the spo::cuda ones in nn/cuda/group_norm.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "spo/core/parallel.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/eigen.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::cpu_kernels {

/// Elements per partial sum: partial(first, len) sums a block in T (vectorised), the blocks are added in double.
inline constexpr std::int64_t reduction_block = 256;
/// Elements a thread should own before a norm kernel goes parallel (a parallel region costs microseconds).
inline constexpr std::int64_t norm_parallel_grain = 1 << 15;

template <class Partial>
double blocked_sum(std::int64_t n, Partial&& partial) {
  double acc = 0.0;
  for (std::int64_t first = 0; first < n; first += reduction_block)
    acc += static_cast<double>(partial(first, std::min(reduction_block, n - first)));
  return acc;
}

/// The moments of one group of n elements: mean and r = 1 / sqrt(var + eps) (biased variance), in two passes that
/// sum blocks of reduction_block elements in T and the block sums in double.
struct GroupMoments {
  double mean = 0.0, rstd = 0.0;
};

template <Scalar T>
GroupMoments group_moments(const T* xg, std::int64_t n, double eps) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const double inv_n = n ? 1.0 / static_cast<double>(n) : 0.0;
  const double mean = inv_n * blocked_sum(n, [&](std::int64_t i, std::int64_t len) {
                        return Eigen::Map<const Array>(xg + i, len).sum();
                      });
  const T mean_t = static_cast<T>(mean);
  const double var = inv_n * blocked_sum(n, [&](std::int64_t i, std::int64_t len) {
                       return (Eigen::Map<const Array>(xg + i, len) - mean_t).square().sum();
                     });
  return {mean, 1.0 / std::sqrt(var + eps)};
}

/// Channel c's y = scale x + shift of a group with moments m: scale = gamma[c] r, shift = beta[c] - mean scale
/// (formed in double, rounded to T once; gamma, beta null means no affine).
template <Scalar T>
std::pair<T, T> group_norm_channel_affine(const GroupMoments& m, const T* gamma, const T* beta, std::int64_t c) {
  const double scale = gamma ? m.rstd * static_cast<double>(gamma[c]) : m.rstd;
  const double shift = (beta ? static_cast<double>(beta[c]) : 0.0) - m.mean * scale;
  return {static_cast<T>(scale), static_cast<T>(shift)};
}

/*!
  REQUIRES
    - x, y hold batch * channels * spatial elements, channels % groups == 0
    - gamma, beta: [channels] or both null (no affine); xhat: same size as x or null; rstd: [batch * groups]
  ENSURES
    - per (b, g): mu = mean(x_bg), var = mean((x_bg - mu)^2) (biased, as torch), rstd = 1 / sqrt(var + eps),
      xhat = (x - mu) * rstd, y = gamma[c] * xhat + beta[c], evaluated as y = scale x + shift
      (group_moments, group_norm_channel_affine).
!*/
template <Scalar T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* xhat, T* rstd, std::int64_t batch,
                        std::int64_t channels, std::int64_t spatial, std::int64_t groups, double eps) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const std::int64_t cg = channels / groups;
  const std::int64_t n = cg * spatial;
  parallel_for(
      0, batch * groups,
      [&](std::int64_t bg) {
        const std::int64_t g = bg % groups;
        const std::int64_t offset = bg * n;
        const GroupMoments m = group_moments(x + offset, n, eps);
        rstd[bg] = static_cast<T>(m.rstd);
        for (std::int64_t ci = 0; ci < cg; ++ci) {
          const auto [scale, shift] = group_norm_channel_affine(m, gamma, beta, g * cg + ci);
          Eigen::Map<const Array> xc(x + offset + ci * spatial, spatial);
          Eigen::Map<Array>(y + offset + ci * spatial, spatial) = xc * scale + shift;
          if (xhat)
            Eigen::Map<Array>(xhat + offset + ci * spatial, spatial) =
                xc * static_cast<T>(m.rstd) - static_cast<T>(m.mean * m.rstd);
        }
      },
      std::max<std::int64_t>(1, norm_parallel_grain / std::max<std::int64_t>(n, 1)));
}

/*!
  REQUIRES
    - dy, xhat, rstd from group_norm_forward; gamma [channels] or null; dx same size as dy
    - sum_dy, sum_dy_xhat: [batch * channels] scratch
  ENSURES
    - dx = rstd * (gamma dy - mean_g(gamma dy) - xhat * mean_g(gamma dy xhat))   (closed form, biased variance)
    - sum_dy[b, c] = sum_s dy, sum_dy_xhat[b, c] = sum_s dy * xhat (the per-sample parts of dbeta, dgamma)
!*/
template <Scalar T>
void group_norm_backward(const T* dy, const T* xhat, const T* rstd, const T* gamma, T* dx, double* sum_dy,
                         double* sum_dy_xhat, std::int64_t batch, std::int64_t channels, std::int64_t spatial,
                         std::int64_t groups) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const std::int64_t cg = channels / groups;
  const std::int64_t n = cg * spatial;
  parallel_for(
      0, batch * groups,
      [&](std::int64_t bg) {
        const std::int64_t b = bg / groups, g = bg % groups;
        const std::int64_t offset = bg * n;
        double s1 = 0.0, s2 = 0.0;  // sum gamma dy, sum gamma dy xhat over the group
        for (std::int64_t ci = 0; ci < cg; ++ci) {
          const std::int64_t c = g * cg + ci;
          const T* dyc = dy + offset + ci * spatial;
          const T* xc = xhat + offset + ci * spatial;
          const double a = blocked_sum(
              spatial, [&](std::int64_t i, std::int64_t len) { return Eigen::Map<const Array>(dyc + i, len).sum(); });
          const double bsum = blocked_sum(spatial, [&](std::int64_t i, std::int64_t len) {
            return (Eigen::Map<const Array>(dyc + i, len) * Eigen::Map<const Array>(xc + i, len)).sum();
          });
          sum_dy[b * channels + c] = a;
          sum_dy_xhat[b * channels + c] = bsum;
          const double gc = gamma ? static_cast<double>(gamma[c]) : 1.0;
          s1 += gc * a;
          s2 += gc * bsum;
        }
        const double r = static_cast<double>(rstd[bg]);
        const double inv_n = n ? 1.0 / static_cast<double>(n) : 0.0;
        const T shift = static_cast<T>(-r * s1 * inv_n);
        const T slope = static_cast<T>(-r * s2 * inv_n);
        for (std::int64_t ci = 0; ci < cg; ++ci) {
          const std::int64_t c = g * cg + ci;
          const T scale = static_cast<T>(r * (gamma ? static_cast<double>(gamma[c]) : 1.0));
          Eigen::Map<const Array> dyc(dy + offset + ci * spatial, spatial);
          Eigen::Map<const Array> xc(xhat + offset + ci * spatial, spatial);
          Eigen::Map<Array>(dx + offset + ci * spatial, spatial) = dyc * scale + xc * slope + shift;
        }
      },
      std::max<std::int64_t>(1, norm_parallel_grain / std::max<std::int64_t>(n, 1)));
}

}  // namespace spo::cpu_kernels

namespace spo::inline kernels {

/*!
  The GroupNorm kernels, with one overload per device, over x [B, C, *spatial] in G = rstd.size(1) groups.
  group_norm_forward(x, gamma, beta, y, xhat, rstd, eps)
    REQUIRES gamma, beta: [C] or both null; xhat: like x, or null; rstd: [B, G], C % G == 0
    ENSURES  rstd (in T's compute type), y (and xhat when not null) as cpu_kernels::group_norm_forward
  group_norm_backward(dy, xhat, rstd, gamma, dx, dgamma, dbeta)
    REQUIRES xhat and rstd from group_norm_forward; gamma [C] or null; dgamma, dbeta: [C] or null
    ENSURES  dx as cpu_kernels::group_norm_backward; dgamma[c] += sum_{b, s} dy xhat and dbeta[c] += sum_{b, s} dy,
             each when not null (on the CPU: per-sample sums in double, added over the batch in double)
!*/
template <Scalar T>
void group_norm_forward(const Tensor<T, cpu>& x, const Tensor<T, cpu>* gamma, const Tensor<T, cpu>* beta,
                        Tensor<T, cpu>& y, Tensor<T, cpu>* xhat, Tensor<T, cpu>& rstd, double eps) {
  cpu_kernels::group_norm_forward(x.data(), gamma ? gamma->data() : nullptr, beta ? beta->data() : nullptr, y.data(),
                                  xhat ? xhat->data() : nullptr, rstd.data(), x.size(0), x.size(1),
                                  x.shape().numel_from(2), rstd.size(1), eps);
}

template <Scalar T>
void group_norm_backward(const Tensor<T, cpu>& dy, const Tensor<T, cpu>& xhat, const Tensor<T, cpu>& rstd,
                         const Tensor<T, cpu>* gamma, Tensor<T, cpu>& dx, Tensor<T, cpu>* dgamma,
                         Tensor<T, cpu>* dbeta) {
  const std::int64_t batch = dy.size(0), channels = dy.size(1);
  std::vector<double> sum_dy(static_cast<std::size_t>(batch * channels));
  std::vector<double> sum_dy_xhat(sum_dy.size());
  cpu_kernels::group_norm_backward(dy.data(), xhat.data(), rstd.data(), gamma ? gamma->data() : nullptr, dx.data(),
                                   sum_dy.data(), sum_dy_xhat.data(), batch, channels, dy.shape().numel_from(2),
                                   rstd.size(1));
  if (!dgamma && !dbeta) return;
  for (std::int64_t c = 0; c < channels; ++c) {
    double gw = 0.0, gb = 0.0;
    for (std::int64_t b = 0; b < batch; ++b) {
      gw += sum_dy_xhat[static_cast<std::size_t>(b * channels + c)];
      gb += sum_dy[static_cast<std::size_t>(b * channels + c)];
    }
    if (dgamma) (*dgamma)[c] += static_cast<T>(gw);
    if (dbeta) (*dbeta)[c] += static_cast<T>(gb);
  }
}

}  // namespace spo::inline kernels

namespace spo::nn {

/*!
  WHAT THIS REPRESENTS
    torch.nn.GroupNorm(num_groups, num_channels, eps, affine): the channels of each sample are split into
    num_groups contiguous groups, each normalised by its own mean and biased variance over (channels of the
    group) x spatial, then scaled and shifted per channel. Input [B, C, *spatial] (rank >= 2).
    eps defaults to torch's 1e-5; diffusers' ResNet blocks pass 1e-6. Keeps xhat [B, C, *spatial] and rstd [B, G]
    for the closed-form backward; the arithmetic is the device's group_norm_* kernels (spo::kernels).
!*/
template <StorageScalar T, Device D = cpu>
class GroupNorm {
  static_assert(kernels_declared<D>,
                "spo::nn::GroupNorm<T, D>: no kernels of device D are declared; include spo/cuda.hpp");
  static_assert(Scalar<T> || half_kernels<D>,
                "spo::nn::GroupNorm<T, D>: 16-bit layers need a device with 16-bit kernels (spo::cuda)");

 public:
  using scalar_type = T;
  using device_type = D;
  using tensor = Tensor<T, D>;

  GroupNorm() = default;
  GroupNorm(std::int64_t num_groups, std::int64_t num_channels, double eps = 1e-5, bool affine = true)
      : groups_(num_groups), channels_(num_channels), eps_(eps), affine_(affine) {
    SPO_CHECK(num_groups > 0 && num_channels % num_groups == 0,
              "GroupNorm: num_channels " << num_channels << " is not divisible by num_groups " << num_groups);
    if (affine) {
      weight_ = Parameter<T, D>(Shape{num_channels});  // [C] = 1
      bias_ = Parameter<T, D>(Shape{num_channels});    // [C] = 0
      fill(weight_.value.view(), T(1));
    }
  }

  tensor forward(const tensor& x) {
    SPO_CHECK(x.rank() >= 2 && x.shape()[1] == channels_, "GroupNorm(" << groups_ << ", " << channels_
                                                                       << "): input shape " << x.shape()
                                                                       << " is not [B, " << channels_ << ", ...]");
    auto y = tensor::uninitialized(x.shape());  // [B, C, *spatial]
    const bool keep = grad_enabled();
    xhat_ = keep ? tensor::uninitialized(x.shape()) : tensor();                         // [B, C, *spatial]
    rstd_ = Tensor<compute_type_t<T>, D>::uninitialized(Shape{x.shape()[0], groups_});  // [B, G]
    group_norm_forward(x, affine_ ? &weight_.value : nullptr, affine_ ? &bias_.value : nullptr, y,
                       keep ? &xhat_ : nullptr, rstd_, eps_);
    return y;
  }

  tensor backward(const tensor& dy) {
    SPO_CHECK(!xhat_.empty(), "GroupNorm::backward without a forward in grad mode");
    check_same_shape(dy.shape(), xhat_.shape(), "GroupNorm::backward (gradient vs input)");
    auto dx = tensor::uninitialized(dy.shape());  // [B, C, *spatial]
    group_norm_backward(dy, xhat_, rstd_, affine_ ? &weight_.value : nullptr, dx,
                        affine_ && weight_.trainable ? &weight_.grad : nullptr,
                        affine_ && bias_.trainable ? &bias_.grad : nullptr);
    xhat_ = tensor();
    return dx;
  }

  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    if (!affine_) return;
    f(join_name(prefix, "weight"), weight_);
    f(join_name(prefix, "bias"), bias_);
  }

  /// Forgets what a grad-mode forward kept (a later backward is then an error).
  void drop_saved() {
    xhat_ = tensor();
    rstd_ = Tensor<compute_type_t<T>, D>();
  }

  std::int64_t num_groups() const { return groups_; }
  std::int64_t num_channels() const { return channels_; }
  double eps() const { return eps_; }
  bool affine() const { return affine_; }
  Parameter<T, D>& weight() { return weight_; }
  Parameter<T, D>& bias() { return bias_; }

 private:
  std::int64_t groups_ = 1, channels_ = 0;
  double eps_ = 1e-5;
  bool affine_ = true;
  Parameter<T, D> weight_, bias_;
  tensor xhat_;                        // [B, C, *spatial] normalised input, kept for backward
  Tensor<compute_type_t<T>, D> rstd_;  // [B, G] 1 / sqrt(var + eps), in the compute type
};

}  // namespace spo::nn
