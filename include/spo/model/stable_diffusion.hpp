// SPDX-License-Identifier: MIT
/// @brief Stable Diffusion 1.x/2.x and SDXL text-to-image from a diffusers pipeline folder: tokenizers, CLIP text
/// encoders, the UNet, the VAE and the checkpoint's scheduler, composed as diffusers' pipelines compose them.
#pragma once

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/core/half.hpp"
#include "spo/core/rng.hpp"
#include "spo/diffusion/ddim.hpp"
#include "spo/diffusion/sampling_loop.hpp"
#include "spo/diffusion/scheduler_json.hpp"
#include "spo/io/config.hpp"
#include "spo/io/diffusers_pipeline.hpp"
#include "spo/io/lora_file.hpp"
#include "spo/io/mapped_safetensors.hpp"
#include "spo/io/single_file_checkpoint.hpp"
#include "spo/io/state_dict.hpp"
#include "spo/model/autoencoder_kl.hpp"
#include "spo/model/diffusers_unet_config.hpp"
#include "spo/model/unet_2d_condition.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/nn/parameter.hpp"
#include "spo/tensor/ops.hpp"
#include "spo/tensor/transfer.hpp"
#include "spo/text/clip_text_model.hpp"
#include "spo/text/clip_tokenizer.hpp"

namespace spo::model {

/// Which pipeline a folder holds: StableDiffusionPipeline (SD 1.x, 2.x) or StableDiffusionXLPipeline (SDXL base).
enum class PipelineKind { sd, sdxl };

/// The parts of a pipeline a one-shot run can hand back once it is past them (StableDiffusion::release).
enum class PipelineComponent { text_encoders, unet };

/// How a pipeline folder is read.
struct PipelineLoadOptions {
  std::optional<std::string> variant;  ///< weights variant, e.g. "fp16" (default: plain files, else the only variant)
  /// For a single-file checkpoint (one original-layout .safetensors): the pipeline folder whose configs and
  /// tokenizers describe it (e.g. the base model's diffusers folder; its weights are not read).
  std::optional<std::filesystem::path> config_folder;
  std::string scheduler;  ///< a scheduler class overriding the checkpoint's (scheduler_override_names)
  double ddim_eta = 0.0;  ///< DDIM's eta when the scheduler is DDIM (diffusers' default 0)
};

/// One text-to-image request (diffusers' __call__ arguments of the same meaning).
struct GenerationSettings {
  std::vector<std::string> prompts;
  std::optional<std::vector<std::string>> negative_prompts;  ///< none: SD encodes "", SDXL uses zeros
  int steps = 50;
  double guidance = 7.5;
  std::int64_t height = 0, width = 0;  ///< 0: the UNet's sample_size times the VAE's scale factor
};

/// Text conditioning of one batch: the prompt rows and the negative rows (SDXL also has pooled embeddings).
template <Scalar T, Device D>
struct PromptEmbeddings {
  Tensor<T, D> cond, uncond;             ///< [B, 77, E]
  Tensor<T, D> pooled, negative_pooled;  ///< [B, P] (SDXL only)
};

/*!
  WHAT THIS REPRESENTS
    A diffusers text-to-image pipeline, loaded from its folder (io::DiffusersPipeline): for SD the tokenizer,
    CLIPTextModel (last hidden state), UNet, VAE and scheduler; for SDXL both tokenizers and text encoders
    (penultimate hidden states concatenated, pooled text_embeds of the second), the text_time UNet with
    add_time_ids (H, W, 0, 0, H, W) and zero negative embeddings for an absent negative prompt when the folder's
    force_zeros_for_empty_prompt says so (the default).
    generate() is diffusers' __call__: latents = noise * init_noise_sigma; per step, the UNet on [uncond; cond] rows
    with scale_model_input, u + g (c - u), scheduler.step; image = VAE.decode(latents / scaling) / 2 + 0.5 clamped
    to [0, 1].
    On a device D other than the CPU every network and the latents live on D; token ids, the scheduler's state
    of the multistep schedulers (diffusion::step_on_host) and the final image are on the host.
    Precision: the networks hold their weights and activations in S, the latents, the scheduler, guidance, the
    prompt embeddings handed out and the image are in T (a compute scalar). S = T is the plain pipeline. A 16-bit S
    (half, bfloat16; a device with 16-bit kernels, spo::cuda) is torch_dtype=float16 / bfloat16 run as
    torch.autocast runs a network: each network's inputs are rounded into S once and its outputs widened exactly,
    the UNet's timesteps and SDXL's time ids stay in compute_type_t<S> (1024 is not a bfloat16 number), and the
    weights load bit for bit from F16 / BF16 files (the "fp16" variant). The VAE follows diffusers' SDXL pipeline:
    with S = half and force_upcast (the config's default), it runs in T (SDXL's VAE overflows half); SD 1.x / 2.x
    and bfloat16 decode in S. Where diffusers also keeps the latents and the scheduler's arithmetic in 16 bits,
    this pipeline keeps them in T.
  ENSURES
    - a folder whose pipeline class, component class or config field spo does not implement is an error naming it
    - weights load strictly: a missing or unexpected tensor, or a shape mismatch, names the tensor and the file
!*/
template <Scalar T, Device D = cpu, StorageScalar S = T>
class StableDiffusion {
  static_assert(!HalfScalar<T>,
                "StableDiffusion<T, D, S>: T is the pipeline's compute scalar (float or double); a "
                "16-bit pipeline keeps its networks in S: StableDiffusion<float, cuda, half>");

 public:
  using tensor = Tensor<T, D>;
  using host_tensor = Tensor<T, cpu>;
  using storage_type = S;
  using Progress = std::function<void(int step, int steps)>;

  /// From a diffusers pipeline folder, or from a single-file checkpoint with options.config_folder.
  static StableDiffusion load(const std::filesystem::path& path, const PipelineLoadOptions& options = {}) {
    if (std::filesystem::is_regular_file(path)) {
      SPO_EXPECT(options.config_folder.has_value(),
                 path.string() << ": a single-file checkpoint needs the pipeline folder of its model for the configs "
                                  "and tokenizers (config_folder; generate --config DIR)");
      const io::SingleFileCheckpoint file(path);
      return load_from(io::DiffusersPipeline(*options.config_folder), options,
                       [&](const std::string& component) { return std::cref(file.component(component)); });
    }
    const io::DiffusersPipeline p(path);
    return load_from(p, options, [&](const std::string& component) {
      return std::make_shared<io::ShardedSafetensors>(p.weights(component, options.variant));
    });
  }

  /// Reads the folder's configs and tokenizers, and every component's weights from `weights(component)` (a
  /// TensorStore, or a pointer or reference wrapper to one).
  template <class Weights>
  static StableDiffusion load_from(const io::DiffusersPipeline& p, const PipelineLoadOptions& options,
                                   Weights&& weights) {
    const std::filesystem::path folder = p.root();
    nn::frozen_parameters_guard frozen;  // inference only: no gradient memory
    StableDiffusion sd;
    if (p.class_name() == "StableDiffusionPipeline")
      sd.kind_ = PipelineKind::sd;
    else if (p.class_name() == "StableDiffusionXLPipeline")
      sd.kind_ = PipelineKind::sdxl;
    else
      throw input_error(folder.string() + ": pipeline class \"" + p.class_name() +
                        "\" is not supported (StableDiffusionPipeline or StableDiffusionXLPipeline)");
    auto expect_class = [&](const std::string& component, std::string_view cls) {
      SPO_EXPECT(p.component(component).class_name == cls,
                 folder.string() << ": component \"" << component << "\" is a " << p.component(component).class_name
                                 << ", expected " << cls);
    };
    expect_class("unet", "UNet2DConditionModel");
    expect_class("vae", "AutoencoderKL");
    expect_class("text_encoder", "CLIPTextModel");
    sd.tokenizer_ = text::ClipTokenizer::load(p.component("tokenizer").dir);
    sd.text_encoder_ = load_weights(text::CLIPTextModel<S, D>(text::load_clip_text_config(p.config("text_encoder"))),
                                    weights("text_encoder"));
    if (sd.kind_ == PipelineKind::sdxl) {
      expect_class("text_encoder_2", "CLIPTextModelWithProjection");
      sd.tokenizer_2_ = text::ClipTokenizer::load(p.component("tokenizer_2").dir);
      sd.text_encoder_2_ =
          load_weights(text::CLIPTextModelWithProjection<S, D>(text::load_clip_text_config(p.config("text_encoder_2"))),
                       weights("text_encoder_2"));
      const auto it = p.options().find("force_zeros_for_empty_prompt");
      sd.force_zeros_ = it == p.options().end() || it->second.is_null() || it->second.get<bool>();
    }
    sd.unet_config_ = load_diffusers_unet_config(p.config("unet"));
    const auto unet_json = io::parse_json(io::read_file_text(p.config("unet")), p.config("unet").string());
    if (unet_json.contains("sample_size") && unet_json["sample_size"].is_number_integer())
      sd.sample_size_ = unet_json["sample_size"].get<std::int64_t>();
    sd.unet_ = load_weights(UNet2DCondition<S, D>(sd.unet_config_), weights("unet"));
    const auto vae_path = p.config("vae");
    const auto vae_config = io::in_config_file(vae_path, [&] {
      auto c = io::from_json<AutoencoderKLConfig>(io::parse_json(io::read_file_text(vae_path), vae_path.string()),
                                                  vae_path.string());
      model::validate(c);
      return c;
    });
    sd.vae_config_ = vae_config;
    sd.vae_upcast_ = std::same_as<S, half> && sd.kind_ == PipelineKind::sdxl && vae_config.upcast();
    if (sd.vae_upcast_)
      sd.vae_upcast_model_ = load_weights(AutoencoderKL<T, D>(vae_config), weights("vae"));
    else
      sd.vae_ = load_weights(AutoencoderKL<S, D>(vae_config), weights("vae"));
    sd.scheduler_ =
        diffusion::load_scheduler_config(p.config("scheduler").string(), options.scheduler, options.ddim_eta);
    const bool xl_unet = sd.unet_config_.text_time.has_value();
    SPO_EXPECT(xl_unet == (sd.kind_ == PipelineKind::sdxl),
               folder.string() << ": a " << p.class_name() << " needs a UNet " << (xl_unet ? "without" : "with")
                               << " addition_embed_type \"text_time\"");
    return sd;
  }

  PipelineKind kind() const { return kind_; }
  const UNetConfig& unet_config() const { return unet_config_; }
  text::CLIPTextModel<S, D>& text_encoder() { return text_encoder_; }
  /// SDXL's second text encoder (empty for SD 1.x / 2.x).
  text::CLIPTextModelWithProjection<S, D>& text_encoder_2() { return text_encoder_2_; }
  UNet2DCondition<S, D>& unet() { return unet_; }
  /// Whether the VAE runs in T rather than S (S = half, SDXL, force_upcast: see above).
  bool vae_upcast() const { return vae_upcast_; }
  /// The VAE in S (unless vae_upcast()).
  AutoencoderKL<S, D>& vae() {
    SPO_EXPECT(!vae_upcast_, "StableDiffusion::vae(): this pipeline runs its VAE upcast (vae_upcast_model())");
    return vae_;
  }
  /// The VAE in T when vae_upcast().
  AutoencoderKL<T, D>& vae_upcast_model() {
    SPO_EXPECT(vae_upcast_, "StableDiffusion::vae_upcast_model(): this pipeline runs its VAE in its storage scalar");
    return vae_upcast_model_;
  }
  diffusion::AnyScheduler& scheduler() { return scheduler_; }
  /// 2^(VAE levels - 1): pixels per latent along each side.
  std::int64_t vae_scale_factor() const { return std::int64_t{1} << (vae_config_.block_out_channels.size() - 1); }
  std::int64_t default_size() const { return sample_size_ * vae_scale_factor(); }

  /// Merges a LoRA file (any layout io::read_lora reads) into the UNet's weights with `scale`.
  std::size_t merge_lora(const std::filesystem::path& file, double scale) {
    expect_loaded(PipelineComponent::unet, "merge_lora");
    const io::MappedSafetensors store(file);
    io::LoraReadOptions o;
    o.layers_per_block = unet_config_.layers_per_block;
    return io::merge_lora(unet_, store, io::read_lora(store, io::lora_targets(unet_), o), scale);
  }

  /// The prompt embeddings of diffusers' encode_prompt (with classifier-free guidance).
  PromptEmbeddings<T, D> encode_prompt(const std::vector<std::string>& prompts,
                                       const std::optional<std::vector<std::string>>& negatives) {
    SPO_EXPECT(!prompts.empty(), "encode_prompt: no prompt");
    SPO_EXPECT(!negatives || negatives->size() == prompts.size(),
               "encode_prompt: " << negatives->size() << " negative prompts for " << prompts.size() << " prompts");
    expect_loaded(PipelineComponent::text_encoders, "encode_prompt");
    PromptEmbeddings<T, D> e;
    const std::vector<std::string> empty(prompts.size(), "");
    if (kind_ == PipelineKind::sd) {
      e.cond = encode_sd(prompts);
      e.uncond = encode_sd(negatives ? *negatives : empty);
      return e;
    }
    std::tie(e.cond, e.pooled) = encode_xl(prompts);
    if (!negatives && force_zeros_) {
      e.uncond = tensor(e.cond.shape());             // [B, 77, E] = 0
      e.negative_pooled = tensor(e.pooled.shape());  // [B, P] = 0
    } else {
      std::tie(e.uncond, e.negative_pooled) = encode_xl(negatives ? *negatives : empty);
    }
    return e;
  }

  /// Runs the sampling loop from `latents` [B, C, h, w] (already scaled by init_noise_sigma) and returns the final
  /// latents. Stochastic schedulers draw their noise from `gen`.
  tensor denoise(tensor latents, const PromptEmbeddings<T, D>& e, const GenerationSettings& s, Generator& gen,
                 const Progress& progress = {}) {
    expect_loaded(PipelineComponent::unet, "denoise");
    nn::no_grad_guard no_grad;
    const std::int64_t b = latents.size(0), h = latents.size(2) * vae_scale_factor(),
                       w = latents.size(3) * vae_scale_factor();
    SPO_EXPECT(e.cond.size(0) == b, "denoise: " << e.cond.size(0) << " prompt rows for " << b << " latents");
    using C = compute_type_t<S>;
    const Tensor<S, D> context = as_scalar<S>(concat_rows(e.uncond, e.cond));  // [2B, 77, E]
    UNetAddedConditions<S, D> added;
    if (kind_ == PipelineKind::sdxl) {
      added.text_embeds = as_scalar<S>(concat_rows(e.negative_pooled, e.pooled));  // [2B, P]
      Tensor<C, cpu> ids(Shape{2 * b, 6});                                         // [2B, 6] = (H, W, 0, 0, H, W)
      for (std::int64_t r = 0; r < 2 * b; ++r) {
        const C row[6] = {C(h), C(w), C(0), C(0), C(h), C(w)};
        for (int k = 0; k < 6; ++k) ids[r * 6 + k] = row[k];
      }
      added.time_ids = transfer<D>(std::move(ids));
    }
    auto model = [&](const tensor& scaled, double t) {
      const Tensor<S, D> input = as_scalar<S>(concat_rows(scaled, scaled));  // [2B, C, h, w]
      Tensor<C, D> steps_t(Shape{2 * b});                                    // [2B]
      fill(steps_t.view(), static_cast<C>(t));
      tensor out = as_scalar<T>(kind_ == PipelineKind::sdxl ? unet_.forward(input, steps_t, context, added)
                                                            : unet_.forward(input, steps_t, context));  // [2B, C, h, w]
      return guide(out, b, s.guidance);                                                                 // [B, C, h, w]
    };
    const diffusion::StepNoise<T, D> noise(gen);
    return std::visit(
        [&](auto& sched) {
          return diffusion::sample<T, D>(sched, s.steps, std::move(latents), model, noise, progress);
        },
        scheduler_);
  }

  /*!
    Frees the weights of `c` (the text encoders: both for SDXL) for a run that is past it: a one-shot text-to-image
    run needs the text encoders only for the prompt and the UNet only until the last step, and at 512x512 the SD1.5
    UNet's 3.4 GB of float weights would otherwise stay resident through the VAE decode, where the peak sits.
    The memory goes back to the allocator's pool (decode hands the pool back to the system). Later use of a released
    component (encode_prompt, denoise, merge_lora) is an error naming it; the other stages are unaffected.
  !*/
  void release(PipelineComponent c) {
    if (c == PipelineComponent::text_encoders) {
      text_encoder_ = text::CLIPTextModel<S, D>();
      text_encoder_2_ = text::CLIPTextModelWithProjection<S, D>();
    } else {
      unet_ = UNet2DCondition<S, D>();
    }
    released_[static_cast<int>(c)] = true;
  }
  bool released(PipelineComponent c) const { return released_[static_cast<int>(c)]; }

  /// The image of `latents` in [0, 1]: [B, 3, H, W]. The blocks the sampling loop left in the allocator's pools are
  /// handed back first: the VAE's activations have other sizes, and both sets would otherwise stay resident.
  host_tensor decode(const tensor& latents) {
    caching_allocator<D>::instance().release_all();
    tensor decoded = vae_upcast_ ? vae_upcast_model_.decode(latents)
                                 : as_scalar<T>(vae_.decode(narrow(latents)));  // [B, 3, H, W] in about [-1, 1]
    host_tensor image = transfer<cpu>(std::move(decoded));
    for (std::int64_t i = 0; i < image.numel(); ++i) image[i] = std::clamp(image[i] / T(2) + T(0.5), T(0), T(1));
    return image;
  }

  /// The initial latents [B, C, H/f, W/f] of `s`: standard normal draws from `gen`, prepared as below.
  tensor initial_latents(const GenerationSettings& s, Generator& gen) {
    const auto [h, w] = image_size(s);
    const std::int64_t f = vae_scale_factor();
    return prepare_latents(
        random_normal<T, D>(Shape{static_cast<std::int64_t>(s.prompts.size()), unet_config_.in_channels, h / f, w / f},
                            gen),
        s.steps);
  }

  /// diffusers' prepare_latents for given noise: noise * init_noise_sigma of the scheduler set to `steps`.
  tensor prepare_latents(tensor noise, int steps) {
    std::visit(
        [&](auto& sched) {
          sched.set_timesteps(steps);
          scale(static_cast<T>(sched.init_noise_sigma()), noise.view());
        },
        scheduler_);
    return noise;
  }

  /// Text to image: the whole pipeline, [B, 3, H, W] in [0, 1] on the host.
  host_tensor generate(const GenerationSettings& s, Generator& gen, const Progress& progress = {}) {
    validate(s);
    const auto e = encode_prompt(s.prompts, s.negative_prompts);
    return decode(denoise(initial_latents(s, gen), e, s, gen, progress));
  }

  /// The height and width `s` asks for (the default size for 0), each a multiple of the VAE scale factor times the
  /// UNet's downsampling (an error naming the value otherwise).
  std::pair<std::int64_t, std::int64_t> image_size(const GenerationSettings& s) const {
    const std::int64_t h = s.height ? s.height : default_size(), w = s.width ? s.width : default_size();
    const std::int64_t m = vae_scale_factor() * unet_config_.size_multiple();
    SPO_EXPECT(h > 0 && w > 0 && h % m == 0 && w % m == 0,
               "image size " << h << "x" << w << " must be a positive multiple of " << m << " for this checkpoint");
    return {h, w};
  }

  void validate(const GenerationSettings& s) const {
    SPO_EXPECT(!s.prompts.empty(), "no prompt given");
    SPO_EXPECT(s.steps >= 1 && s.steps <= 1000, "steps must be in [1, 1000], got " << s.steps);
    SPO_EXPECT(s.guidance >= 0, "guidance must be >= 0, got " << s.guidance);
    (void)image_size(s);
  }

 private:
  template <class M, class Store>
  static M load_weights(M model, const Store& store) {
    if constexpr (requires { *store; })
      io::load_state_dict(model, *store);  // a pointer to a store
    else
      io::load_state_dict(model, store.get());  // a reference wrapper
    return model;
  }

  void expect_loaded(PipelineComponent c, const char* stage) const {
    SPO_EXPECT(!released(c), stage << ": the pipeline's "
                                   << (c == PipelineComponent::unet ? "UNet was" : "text encoders were")
                                   << " released (StableDiffusion::release) after an earlier stage");
  }

  /// x in the networks' scalar S: x itself when S is T, else rounded once.
  static decltype(auto) narrow(const tensor& x) {
    if constexpr (std::same_as<S, T>)
      return (x);
    else
      return cast<S>(x);
  }

  static tensor concat_rows(const tensor& a, const tensor& b) {
    Shape s = a.shape();
    SPO_CHECK(b.shape() == s, "concat_rows: " << a.shape() << " and " << b.shape());
    s[0] = 2 * s[0];
    auto out = tensor::uninitialized(s);  // [2B, ...]
    copy_elements<D>(a.data(), a.numel(), out.data());
    copy_elements<D>(b.data(), b.numel(), out.data() + a.numel());
    return out;
  }

  /// u + g (c - u) of the UNet output [2B, ...] = [u; c] (diffusion::guide).
  static tensor guide(const tensor& out, std::int64_t b, double g) {
    Shape s = out.shape();
    s[0] = b;
    auto u = tensor::uninitialized(s);  // [B, C, h, w]
    auto c = tensor::uninitialized(s);  // [B, C, h, w]
    copy_elements<D>(out.data(), u.numel(), u.data());
    copy_elements<D>(out.data() + u.numel(), c.numel(), c.data());
    return diffusion::guide(u, c, g);
  }

  std::vector<std::int32_t> token_rows(const text::ClipTokenizer& tok, const std::vector<std::string>& prompts) {
    std::vector<std::int32_t> ids;
    for (const auto& p : prompts) {
      const auto row = tok.encode(p);
      ids.insert(ids.end(), row.begin(), row.end());
    }
    return ids;
  }

  tensor encode_sd(const std::vector<std::string>& prompts) {
    const auto ids = token_rows(*tokenizer_, prompts);
    return as_scalar<T>(
        text_encoder_.forward(ids, static_cast<std::int64_t>(prompts.size())).last_hidden_state);  // [B, 77, E]
  }

  std::pair<tensor, tensor> encode_xl(const std::vector<std::string>& prompts) {
    const auto batch = static_cast<std::int64_t>(prompts.size());
    auto one = text_encoder_.forward(token_rows(*tokenizer_, prompts), batch, true);
    auto two = text_encoder_2_.forward(token_rows(*tokenizer_2_, prompts), batch, true);
    const Tensor<S, D>& h1 = one.penultimate_hidden_state();  // [B, 77, E1]
    const Tensor<S, D>& h2 = two.penultimate_hidden_state();  // [B, 77, E2]
    const std::int64_t rows = h1.size(0) * h1.size(1), e1 = h1.size(2), e2 = h2.size(2);
    auto cat = Tensor<S, D>::uninitialized(Shape{h1.size(0), h1.size(1), e1 + e2});  // [B, 77, E1 + E2]
    for (std::int64_t r = 0; r < rows; ++r) {
      copy_elements<D>(h1.data() + r * e1, e1, cat.data() + r * (e1 + e2));
      copy_elements<D>(h2.data() + r * e2, e2, cat.data() + r * (e1 + e2) + e1);
    }
    return {as_scalar<T>(std::move(cat)), as_scalar<T>(std::move(two.text_embeds))};  // pooled [B, P]
  }

  PipelineKind kind_ = PipelineKind::sd;
  bool force_zeros_ = true;
  std::optional<text::ClipTokenizer> tokenizer_, tokenizer_2_;
  std::int64_t sample_size_ = 64;  // the UNet's sample_size: latents per side at the default image size
  text::CLIPTextModel<S, D> text_encoder_;
  text::CLIPTextModelWithProjection<S, D> text_encoder_2_;
  UNetConfig unet_config_;
  UNet2DCondition<S, D> unet_;
  AutoencoderKLConfig vae_config_;
  bool vae_upcast_ = false;
  AutoencoderKL<S, D> vae_;               // unless vae_upcast_
  AutoencoderKL<T, D> vae_upcast_model_;  // when vae_upcast_
  diffusion::AnyScheduler scheduler_;
  bool released_[2] = {false, false};  // by PipelineComponent
};

}  // namespace spo::model
