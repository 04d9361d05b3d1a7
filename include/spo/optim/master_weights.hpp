// SPDX-License-Identifier: MIT
/// @brief FP32 master copies of a model's trainable 16-bit parameters: the optimizer, clipping and loss scaling run on
/// them, the model computes with their rounding.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/core/half.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/ops.hpp"

namespace spo::optim {

/// The scalar a model's parameters are stored in: Model::storage_type where the model has one (model::Autocast: a
/// 16-bit network behind float tensors), Model::scalar_type otherwise.
template <class Model>
struct parameter_scalar {
  using type = typename Model::scalar_type;
};
template <class Model>
requires requires { typename Model::storage_type; }
struct parameter_scalar<Model> {
  using type = typename Model::storage_type;
};
template <class Model>
using parameter_scalar_t = typename parameter_scalar<Model>::type;

/*!
  WHAT THIS REPRESENTS
    The master weights of mixed-precision training (Micikevicius et al. 2018; apex's O2, the official SPO recipe's
    FP32 LoRA under fp16 autocast). For every trainable Parameter<T, D> of `model` with a 16-bit T it holds a
    Parameter<float, D> under the same name, initialised from the model's value. A training step is
      gather_gradients()  master.grad = float(p.grad)             (exact: every 16-bit value is a float)
      (unscale, clip, optimizer step on *this)                    (everything in float)
      publish()           p.value = T(master.value)               (one rounding to nearest even per element)
    so that updates smaller than half a 16-bit ulp accumulate in the master instead of vanishing. Trainable
    parameters that are already float or double are visited as they are (no copy): for an FP32 model the wrapper is
    the identity and a step through it is bitwise the step on the model.
    Frozen parameters are not visited; the set of trainable parameters is fixed at construction (call refresh()
    after changing it, e.g. after LoRA::attach).
  REQUIRES
    - Model: visit_parameters(f, prefix) over nn::Parameter<T, D> with StorageScalar T; one device D
!*/
template <class Model>
class MasterWeights {
  using D = typename Model::device_type;
  /// The scalar a visited parameter holds.
  template <class P>
  using scalar_of = typename std::remove_cvref_t<decltype(std::declval<P&>().value)>::value_type;

 public:
  explicit MasterWeights(Model& model) : model_(model) { refresh(); }
  MasterWeights(const MasterWeights&) = delete;
  MasterWeights(MasterWeights&&) = default;  // the masters move with the trainer that owns them
  MasterWeights& operator=(const MasterWeights&) = delete;

  /// Rebuilds the masters from the model's current trainable 16-bit values.
  void refresh() {
    masters_.clear();
    model_.visit_parameters(
        [&](std::string_view name, auto& p) {
          if constexpr (HalfScalar<scalar_of<decltype(p)>>) {
            if (!p.trainable) return;
            auto& m = masters_.emplace_back();
            m.name = std::string(name);
            m.param.value = cast<float>(p.value);
            m.param.grad = Tensor<float, D>(p.value.shape());
          }
        },
        {});
  }

  /// The number of trainable 16-bit parameters with a master copy.
  std::size_t size() const { return masters_.size(); }

  /// Every trainable parameter in float or double: the masters under their names, the model's own wider ones.
  template <class F>
  void visit_parameters(F&& f, std::string_view prefix) {
    std::size_t i = 0;
    model_.visit_parameters(
        [&](std::string_view name, auto& p) {
          if constexpr (HalfScalar<scalar_of<decltype(p)>>) {
            if (!p.trainable) return;
            f(nn::join_name(prefix, name), next(i, name).param);
          } else {
            f(nn::join_name(prefix, name), p);
          }
        },
        {});
    check_all_visited(i);
  }

  /// master.grad = float(p.grad) for every 16-bit trainable parameter.
  void gather_gradients() {
    each_pair([](auto& p, nn::Parameter<float, D>& m) { m.grad = cast<float>(p.grad); });
  }

  /// p.value = T(master.value) for every 16-bit trainable parameter.
  void publish() {
    each_pair([](auto& p, nn::Parameter<float, D>& m) { p.value = cast<scalar_of<decltype(p)>>(m.value); });
  }

 private:
  template <class F>
  void each_pair(F&& f) {
    std::size_t i = 0;
    model_.visit_parameters(
        [&](std::string_view name, auto& p) {
          if constexpr (HalfScalar<scalar_of<decltype(p)>>) {
            if (p.trainable) f(p, next(i, name).param);
          }
        },
        {});
    check_all_visited(i);
  }

  void check_all_visited(std::size_t i) const {
    SPO_CHECK(i == masters_.size(), "MasterWeights: the model has " << i << " trainable 16-bit parameters, the masters "
                                                                    << masters_.size()
                                                                    << "; call refresh() after freezing or attaching "
                                                                       "parameters");
  }

  /// The i-th master, checked against the parameter the model visits in its place.
  auto& next(std::size_t& i, std::string_view name) {
    SPO_CHECK(i < masters_.size() && masters_[i].name == name,
              "MasterWeights: the model's trainable parameters changed (at \""
                  << name << "\"); call refresh() after freezing or attaching parameters");
    return masters_[i++];
  }

  struct Master {
    std::string name;
    nn::Parameter<float, D> param;
  };

  Model& model_;
  std::vector<Master> masters_;
};

}  // namespace spo::optim
