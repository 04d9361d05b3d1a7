// SPDX-License-Identifier: MIT
/// @brief Where a stored model lives: the config it was trained with and its weights (a config section of two paths).
#pragma once

#include <string>

#include <boost/hana/define_struct.hpp>

namespace spo::io {

/// A stored model: `config` is the JSON config it was trained with (its architecture), `weights` its safetensors file.
struct ModelFiles {
  BOOST_HANA_DEFINE_STRUCT(ModelFiles, (std::string, config), (std::string, weights));
};

}  // namespace spo::io
