// SPDX-License-Identifier: MIT
/// @brief The block-index arithmetic between the original (ldm / sgm) UNet's block names (`input_blocks.4.1`,
/// `middle_block.1`, `output_blocks.2.1`) and diffusers' (`down_blocks.1.attentions.0` ...), shared by LoRA files
/// and single-file checkpoints.
#pragma once

#ifndef SPO_IO_DETAIL_ORIGINAL_UNET_NAMES_ALLOWED
#error "spo/io/detail/original_unet_names.hpp is private; include spo/io/single_file_checkpoint.hpp"
#endif

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace spo::io::detail {

/// One block of the original UNet named in diffusers' terms: `block` is the diffusers path (`down_blocks.1.resnets.0`,
/// `up_blocks.0.upsamplers.0`, `mid_block.attentions.0`, joined by the separator) and `rest` what followed the
/// original block's path (`in_layers.0.weight`, `op.weight`, `proj_in.weight`; empty when nothing did).
struct OriginalUnetBlock {
  std::string block;
  std::string_view rest;
  enum Kind { resnet, attention, downsampler, upsampler } kind = resnet;
};

/*!
  Maps the original block path at the front of `name`, whose parts are joined by `sep` ('.' in checkpoints, '_' in
  kohya LoRA names), for a UNet with `layers` resnets per down level (layers_per_block):
    input_blocks.i.0 (i >= 1)   -> down_blocks.b.resnets.l          b = (i-1) / (layers+1), l = (i-1) % (layers+1)
    input_blocks.i.0.op         -> down_blocks.b.downsamplers.0     (rest starts with `op`)
    input_blocks.i.1            -> down_blocks.b.attentions.l
    middle_block.0 / 1 / 2      -> mid_block.resnets.0 / attentions.0 / resnets.1
    output_blocks.i.0           -> up_blocks.b.resnets.l             b = i / (layers+1), l = i % (layers+1)
    output_blocks.i.1           -> up_blocks.b.attentions.l, or up_blocks.b.upsamplers.0 when rest starts with `conv`
                                   and sep is '.' (a level without attention; kohya names keep the attention reading,
                                   LoRA files never adapt the 3x3 upsampler convolution)
    output_blocks.i.2           -> up_blocks.b.upsamplers.0
  ENSURES nullopt when `name` starts with none of these (input_blocks.0 included), or an index does not parse
!*/
inline std::optional<OriginalUnetBlock> original_unet_block(std::string_view name, std::int64_t layers, char sep) {
  auto number = [&](std::string_view& rest, std::int64_t& v) {
    const auto r = std::from_chars(rest.data(), rest.data() + rest.size(), v);
    if (r.ec != std::errc{} || r.ptr == rest.data()) return false;
    rest.remove_prefix(static_cast<std::size_t>(r.ptr - rest.data()));
    if (!rest.empty() && rest.front() == sep) rest.remove_prefix(1);
    return true;
  };
  auto starts_with_part = [&](std::string_view rest, std::string_view part) {
    return rest.starts_with(part) && (rest.size() == part.size() || rest[part.size()] == sep);
  };
  const std::string s(1, sep);
  std::int64_t i = 0, j = 0;
  for (const std::string_view stem : {"input_blocks", "output_blocks"}) {
    if (!name.starts_with(stem) || name.size() == stem.size() || name[stem.size()] != sep) continue;
    std::string_view rest = name.substr(stem.size() + 1);
    if (!number(rest, i) || !number(rest, j) || j < 0 || j > 2) return std::nullopt;
    const bool down = stem == "input_blocks";
    if (down && i < 1) return std::nullopt;
    const std::int64_t block = down ? (i - 1) / (layers + 1) : i / (layers + 1);
    const std::int64_t layer = down ? (i - 1) % (layers + 1) : i % (layers + 1);
    OriginalUnetBlock::Kind kind = j == 0   ? OriginalUnetBlock::resnet
                                   : j == 1 ? OriginalUnetBlock::attention
                                            : OriginalUnetBlock::upsampler;
    if (down && rest.starts_with("op")) kind = OriginalUnetBlock::downsampler;
    if (!down && j == 1 && sep == '.' && starts_with_part(rest, "conv")) kind = OriginalUnetBlock::upsampler;
    static constexpr std::string_view inner[] = {"resnets", "attentions", "downsamplers", "upsamplers"};
    const bool sampler = kind == OriginalUnetBlock::downsampler || kind == OriginalUnetBlock::upsampler;
    return OriginalUnetBlock{std::string(down ? "down_blocks" : "up_blocks") + s + std::to_string(block) + s +
                                 std::string(inner[kind]) + s + std::to_string(sampler ? 0 : layer),
                             rest, kind};
  }
  if (name.starts_with("middle_block") && name.size() > 12 && name[12] == sep) {
    std::string_view rest = name.substr(13);
    if (!number(rest, i) || i < 0 || i > 2) return std::nullopt;
    const std::string part = i == 1 ? "attentions" + s + "0" : i == 0 ? "resnets" + s + "0" : "resnets" + s + "1";
    return OriginalUnetBlock{"mid_block" + s + part, rest,
                             i == 1 ? OriginalUnetBlock::attention : OriginalUnetBlock::resnet};
  }
  return std::nullopt;
}

}  // namespace spo::io::detail
