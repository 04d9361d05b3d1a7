// SPDX-License-Identifier: MIT
/// @brief Preference-model variants of SPO's Table 5 as compile-time policies, their checkpoints and their scorer.
#pragma once

#include <algorithm>
#include <concepts>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spo/core/image_format.hpp"
#include "spo/io/config.hpp"
#include "spo/io/json.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/spm/preference_network.hpp"
#include "spo/spm/time_policy.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/text/prompts.hpp"

namespace spo::spm {

/// Training input: each pair is noised at a shared random t in [0, T) with shared noise, and the frozen base model
/// (with CFG) predicts x0 in one step; the network scores (x0_pred, t). SPO's spm_task.get_noised_imgs.
struct NoisedPrediction {
  static constexpr std::string_view name = "noised_prediction";
  static constexpr bool noised = true;
};

/// Training input: the clean images at t = 0 (PickScore's training; applied to x0 predictions at every step later).
struct CleanImage {
  static constexpr std::string_view name = "clean_image";
  static constexpr bool noised = false;
};

template <class I>
concept TrainingInput = requires {
  { I::name } -> std::convertible_to<std::string_view>;
  { I::noised } -> std::convertible_to<bool>;
};

/*!
  WHAT THIS REPRESENTS
    A preference-model variant: the network's time policy and how it is trained. The three of SPO's Table 5:
      StepAwarePM        = Variant<StepConditioned, NoisedPrediction>   the SPM
      NoStepConditionPM  = Variant<Unconditioned, NoisedPrediction>     "w/o step condition"
      CleanPM            = Variant<Unconditioned, CleanImage>           "PickScore": clean images only
    `name` identifies the variant in checkpoints; loading a checkpoint of another variant is an error.
    Format is the image format the network scores (a checkpoint of another resolution or channel count is an error
    at load; an experiment pairing it with a diffusion model of another format does not compile).
!*/
template <TimePolicy Policy, TrainingInput Input, ImageFormatType Format = FashionImage>
struct Variant {
  using time_policy = Policy;
  using training_input = Input;
  using image_format = Format;
  template <Scalar T, Device D = cpu>
  using network = PreferenceNetwork<T, Policy, D>;
  static constexpr std::string_view name = [] {
    if constexpr (Policy::conditioned && Input::noised)
      return std::string_view("step_aware");
    else if constexpr (!Policy::conditioned && Input::noised)
      return std::string_view("no_step_condition");
    else if constexpr (!Policy::conditioned && !Input::noised)
      return std::string_view("clean");
    else
      return std::string_view("step_conditioned_clean");
  }();
};

using StepAwarePM = Variant<StepConditioned, NoisedPrediction>;
using NoStepConditionPM = Variant<Unconditioned, NoisedPrediction>;
using CleanPM = Variant<Unconditioned, CleanImage>;

inline constexpr std::string_view checkpoint_format = "spo.preference_model.v1";

/// Writes the network's weights (F32) with metadata: format, variant name, time policy and the network config.
template <class V, class Net>
void save_preference_model(const std::filesystem::path& path, Net& net, const nlohmann::json& extra = {}) {
  std::map<std::string, std::string> meta{{"format", std::string(checkpoint_format)},
                                          {"variant", std::string(V::name)},
                                          {"time_policy", std::string(V::time_policy::name)},
                                          {"network", io::to_json(net.config()).dump()}};
  if (!extra.is_null()) meta["info"] = extra.dump();
  io::save_state_dict(path, net, {}, std::move(meta));
}

/// The metadata of a preference-model checkpoint (variant and network config), checked to be one.
struct PreferenceModelFile {
  std::string variant;
  PreferenceNetworkConfig network;
  io::NamedTensors tensors;
};

inline PreferenceModelFile read_preference_model(const std::filesystem::path& path) {
  PreferenceModelFile f;
  f.tensors = io::load_safetensors(path);
  const auto& m = f.tensors.metadata;
  SPO_EXPECT(
      m.contains("format") && m.at("format") == checkpoint_format && m.contains("variant") && m.contains("network"),
      path << ": not a preference-model checkpoint (metadata \"format\" is not \"" << checkpoint_format << "\")");
  f.variant = m.at("variant");
  f.network = io::from_json<PreferenceNetworkConfig>(io::parse_json(m.at("network"), path.string()),
                                                     path.string() + " (metadata \"network\")");
  return f;
}

/// Loads a checkpoint of variant V into a new network; a checkpoint of another variant is an error naming both.
template <class V, Scalar T, Device D = cpu>
typename V::template network<T, D> load_preference_model(const std::filesystem::path& path) {
  auto f = read_preference_model(path);
  SPO_EXPECT(f.variant == V::name, path << " holds the preference model variant \"" << f.variant
                                        << "\", but this program expects \"" << V::name << "\"");
  using F = typename V::image_format;
  SPO_EXPECT(
      f.network.image.channels == F::channels && f.network.image.resolution == F::height && F::height == F::width,
      path << " scores images of " << f.network.image.channels << " x " << f.network.image.resolution << " x "
           << f.network.image.resolution << ", but this program's preference policy is built for " << F::channels
           << " x " << F::height << " x " << F::width);
  Generator init{0, 0};
  auto net = make_preference_network<typename V::template network<T, D>>(f.network, init);
  io::load_state_dict(net, f.tensors);
  nn::set_trainable(net, false);
  return net;
}

/// Initialises `net` from a checkpoint of any variant with the same network config (SPO initialises the SPM from
/// PickScore): shared parameters load, the rest (the adaLN modulation) keeps its identity init.
template <class Net>
void init_from_preference_model(Net& net, const std::filesystem::path& path) {
  auto f = read_preference_model(path);
  SPO_EXPECT(io::to_json(f.network) == io::to_json(net.config()),
             path << ": network config " << io::to_json(f.network).dump() << " differs from this one "
                  << io::to_json(net.config()).dump());
  io::load_state_dict(net, f.tensors, {.strict = false, .prefix = {}});
}

/*!
  WHAT THIS REPRESENTS
    A trained preference network of variant V as a preference::PreferenceModel: prompts are tokenized with the
    Fashion-MNIST tokenizer, x0 predictions are clamped to [-1, 1] (SPO's preprocessing clamps after decoding),
    and scores are computed without gradients in batches of `batch`.
!*/
template <class V, Scalar T, Device D = cpu>
class NetworkPreference {
 public:
  using scalar_type = T;
  using device_type = D;
  using network_type = typename V::template network<T, D>;
  static constexpr std::string_view name = V::name;

  explicit NetworkPreference(network_type net, std::int64_t batch = 256)
      : net_(std::move(net)),
        tokenizer_(text::fashion_tokenizer(static_cast<int>(net_.config().text_max_length))),
        batch_(batch) {}

  std::vector<double> score(const Tensor<T, D>& x0, std::span<const std::int64_t> t,
                            std::span<const std::string> prompts) {
    SPO_CHECK(
        x0.rank() == 4 && static_cast<std::int64_t>(t.size()) == x0.size(0) &&
            static_cast<std::int64_t>(prompts.size()) == x0.size(0),
        name << ": images " << x0.shape() << " with " << t.size() << " timesteps and " << prompts.size() << " prompts");
    nn::no_grad_guard guard;
    const std::int64_t n = x0.size(0), per = x0.numel() / std::max<std::int64_t>(n, 1);
    std::vector<double> out;
    out.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; i += batch_) {
      const std::int64_t m = std::min(batch_, n - i);
      Shape s = x0.shape();
      s[0] = m;
      auto x = Tensor<T, D>::uninitialized(s);  // [m, C, R, R]
      if constexpr (D::host_accessible) {
        for (std::int64_t j = 0; j < m * per; ++j) x[j] = std::clamp(x0[i * per + j], T(-1), T(1));
      } else {
        copy_elements<D>(x0.data() + i * per, m * per, x.data());
        clamp_inplace(x, T(-1), T(1));
      }
      Tensor<T, cpu> tt(Shape{m});  // [m]
      std::vector<std::vector<std::int32_t>> ids;
      for (std::int64_t j = 0; j < m; ++j) {
        tt[j] = static_cast<T>(t[static_cast<std::size_t>(i + j)]);
        ids.push_back(tokenizer_.encode(prompts[static_cast<std::size_t>(i + j)]));
      }
      const auto s_b = transfer<cpu>(net_.forward(x, transfer<D>(tt), ids));  // [m]
      for (std::int64_t j = 0; j < m; ++j) out.push_back(static_cast<double>(s_b[j]));
    }
    return out;
  }

  network_type& network() { return net_; }

 private:
  network_type net_;
  text::Tokenizer tokenizer_;
  std::int64_t batch_;
};

}  // namespace spo::spm
