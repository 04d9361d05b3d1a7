// SPDX-License-Identifier: MIT
/// @brief Strict JSON parsing for files spo reads: duplicate object keys and parse errors throw spo::error naming the
/// source.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "spo/core/error.hpp"

namespace spo::io {

using json = nlohmann::json;

/// Parses `text`; a syntax error, or an object holding the same key twice (which nlohmann would silently
/// resolve to the last value), throws spo::error "<source>: ..." with nlohmann's line/column or the duplicate key.
inline json parse_json(std::string_view text, std::string_view source) {
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::object_start:
        keys_per_object.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys_per_object.empty()) keys_per_object.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys_per_object.empty() && !keys_per_object.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    throw error(std::string(source) + ": invalid JSON: " + e.what());
  }
  if (!duplicate.empty()) throw error(std::string(source) + ": duplicate JSON key \"" + duplicate + "\"");
  return j;
}

}  // namespace spo::io
