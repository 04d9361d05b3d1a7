// SPDX-License-Identifier: MIT
/// @brief JSON configs as reflected structs (Boost.Hana): one strict reader and one writer for every config type.
#pragma once

#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/hana.hpp>

#include "spo/core/error.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/json.hpp"

namespace spo::io {

/*!
  WHAT THIS REPRESENTS
    The string spellings of an enum used in configs. Specialise it next to the enum:
      template <> struct spo::io::enum_strings<Prediction> {
        static constexpr std::array values{std::pair{std::string_view("epsilon"), Prediction::epsilon},
                                           std::pair{std::string_view("v_prediction"), Prediction::v}};
      };
!*/
template <class E>
struct enum_strings;

template <class E>
concept RegisteredEnum = std::is_enum_v<E> && requires {
  { enum_strings<E>::values.size() } -> std::convertible_to<std::size_t>;
};

template <class T>
concept ConfigStruct = boost::hana::Struct<T>::value;

namespace detail::config {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T>
struct is_string_map : std::false_type {};
template <class T, class C, class A>
struct is_string_map<std::map<std::string, T, C, A>> : std::true_type {};

template <class T>
inline constexpr bool dependent_false = false;

/*!
  WHAT THIS REPRESENTS
    The file each value of a config merged from overlays came from (load_config_json), so that an error names the
    file to edit: `by_path` maps the key path of every value an overlay set ("train.lr", "resampler") to that
    overlay; any other path takes the file of its nearest recorded ancestor ("train.templates[0]" that of "train"),
    or `root`, the config at the end of the "extends" chain, where none is recorded.
!*/
struct merged_sources {
  std::string root;
  std::map<std::string, std::string, std::less<>> by_path;
};

inline std::string_view source_of(std::string_view source, std::string_view /*path*/) { return source; }

inline std::string_view source_of(const merged_sources& sources, std::string_view path) {
  while (!path.empty()) {
    if (const auto it = sources.by_path.find(path); it != sources.by_path.end()) return it->second;
    const std::size_t cut = path.find_last_of(".[");
    path = cut == std::string_view::npos ? std::string_view() : path.substr(0, cut);
  }
  return sources.root;
}

/// Throws input_error "<file>: <path>: <msg>", the file being `source` or, for a merged config, that of `path`.
template <class Source>
[[noreturn]] void fail(const Source& source, const std::string& path, const std::string& msg) {
  throw input_error(std::string(source_of(source, path)) + ": " + (path.empty() ? std::string("<root>") : path) + ": " +
                    msg);
}

inline std::string kind(const json& j) {
  if (j.is_number_integer()) return "integer " + j.dump();
  if (j.is_number_float()) return "number " + j.dump();
  if (j.is_string()) return "string " + j.dump();
  if (j.is_boolean()) return "boolean " + j.dump();
  return j.type_name();
}

inline std::string member_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

template <class T, class Source>
void read(const json& j, T& out, const std::string& path, const Source& source);

template <ConfigStruct T, class Source>
void read_struct(const json& j, T& out, const std::string& path, const Source& source) {
  namespace hana = boost::hana;
  if (!j.is_object()) fail(source, path, "expected an object, got " + kind(j));
  std::set<std::string, std::less<>> members;
  hana::for_each(hana::accessors<T>(), [&](auto pair) { members.emplace(hana::to<char const*>(hana::first(pair))); });
  for (const auto& [key, unused] : j.items())
    if (!members.contains(key)) fail(source, member_path(path, key), "unknown key");
  hana::for_each(hana::accessors<T>(), [&](auto pair) {
    const char* name = hana::to<char const*>(hana::first(pair));
    auto& member = hana::second(pair)(out);
    using M = std::remove_cvref_t<decltype(member)>;
    const std::string p = member_path(path, name);
    auto it = j.find(name);
    if (it == j.end()) {
      if constexpr (is_optional<M>::value)
        member.reset();
      else
        fail(source, p, "missing key");
    } else {
      read(*it, member, p, source);
    }
  });
}

/// Reads one value of type T at `path`; every mismatch throws spo::error "<source>: <path>: <problem>", where
/// `source` is a file name (std::string_view) or the merged_sources of a merged config.
template <class T, class Source>
void read(const json& j, T& out, const std::string& path, const Source& source) {
  if constexpr (std::same_as<T, json>) {
    out = j;
  } else if constexpr (std::same_as<T, bool>) {
    if (!j.is_boolean()) fail(source, path, "expected true or false, got " + kind(j));
    out = j.get<bool>();
  } else if constexpr (std::integral<T>) {
    if (!j.is_number_integer()) fail(source, path, "expected an integer, got " + kind(j));
    const bool in_range = j.is_number_unsigned()
                              ? j.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())
                              : (std::is_signed_v<T> ? j.get<std::int64_t>() >= std::numeric_limits<T>::min() &&
                                                           j.get<std::int64_t>() <= std::numeric_limits<T>::max()
                                                     : j.get<std::int64_t>() >= 0);
    if (!in_range) fail(source, path, "integer " + j.dump() + " is out of range");
    out = j.is_number_unsigned() ? static_cast<T>(j.get<std::uint64_t>()) : static_cast<T>(j.get<std::int64_t>());
  } else if constexpr (std::floating_point<T>) {
    if (!j.is_number()) fail(source, path, "expected a number, got " + kind(j));
    const double v = j.get<double>();
    if (std::isfinite(v) && !std::isfinite(static_cast<T>(v)))
      fail(source, path, "number " + j.dump() + " is out of range");
    out = static_cast<T>(v);
  } else if constexpr (std::same_as<T, std::string>) {
    if (!j.is_string()) fail(source, path, "expected a string, got " + kind(j));
    out = j.get<std::string>();
  } else if constexpr (RegisteredEnum<T>) {
    std::string allowed;
    for (const auto& [name, value] : enum_strings<T>::values)
      allowed += (allowed.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    if (!j.is_string()) fail(source, path, "expected one of " + allowed + ", got " + kind(j));
    const std::string s = j.get<std::string>();
    for (const auto& [name, value] : enum_strings<T>::values)
      if (name == s) {
        out = value;
        return;
      }
    fail(source, path, "unknown value \"" + s + "\", expected one of " + allowed);
  } else if constexpr (is_optional<T>::value) {
    if (j.is_null()) {
      out.reset();
    } else {
      typename T::value_type v{};
      read(j, v, path, source);
      out = std::move(v);
    }
  } else if constexpr (is_vector<T>::value) {
    if (!j.is_array()) fail(source, path, "expected an array, got " + kind(j));
    out.clear();
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
      typename T::value_type v{};
      read(j[i], v, path + "[" + std::to_string(i) + "]", source);
      out.push_back(std::move(v));
    }
  } else if constexpr (is_string_map<T>::value) {
    if (!j.is_object()) fail(source, path, "expected an object, got " + kind(j));
    out.clear();
    for (const auto& [key, value] : j.items()) read(value, out[key], member_path(path, key), source);
  } else if constexpr (ConfigStruct<T>) {
    read_struct(j, out, path, source);
  } else {
    static_assert(dependent_false<T>,
                  "config type not supported: use bool, integers, floating point, std::string, a RegisteredEnum, "
                  "std::optional, std::vector, std::map<std::string, T>, nlohmann::json or a BOOST_HANA_DEFINE_STRUCT");
  }
}

template <class T>
json write(const T& v) {
  namespace hana = boost::hana;
  if constexpr (std::same_as<T, json> || std::same_as<T, bool> || std::integral<T> || std::floating_point<T> ||
                std::same_as<T, std::string>) {
    return json(v);
  } else if constexpr (RegisteredEnum<T>) {
    for (const auto& [name, value] : enum_strings<T>::values)
      if (value == v) return json(std::string(name));
    throw error("to_json: enum value " + std::to_string(static_cast<long long>(v)) + " has no registered name");
  } else if constexpr (is_optional<T>::value) {
    return v ? write(*v) : json(nullptr);
  } else if constexpr (is_vector<T>::value) {
    json a = json::array();
    for (const auto& x : v) a.push_back(write(x));
    return a;
  } else if constexpr (is_string_map<T>::value) {
    json o = json::object();
    for (const auto& [k, x] : v) o[k] = write(x);
    return o;
  } else if constexpr (ConfigStruct<T>) {
    json o = json::object();
    hana::for_each(hana::accessors<T>(), [&](auto pair) {
      const auto& member = hana::second(pair)(v);
      using M = std::remove_cvref_t<decltype(member)>;
      if constexpr (is_optional<M>::value) {
        if (!member) return;  // absent optional keys are omitted, so to_json(from_json(j)) == j
      }
      o[hana::to<char const*>(hana::first(pair))] = write(member);
    });
    return o;
  } else {
    static_assert(dependent_false<T>, "config type not supported by to_json");
  }
}

/// Merges the overlay object `overlay` (from file `file`) onto `base` at key path `path`, as a JSON merge patch
/// (RFC 7386): where both hold an object under a key, the two merge key by key; null removes the key; any other
/// overlay value (array, scalar, or an object over a non-object) replaces the base's value. `sources` records `file`
/// for each value set and drops what it recorded inside a replaced or removed value.
inline void merge_overlay(json& base, const json& overlay, const std::string& path, const std::string& file,
                          merged_sources& sources) {
  for (const auto& [key, value] : overlay.items()) {
    const std::string p = member_path(path, key);
    const auto it = base.find(key);
    if (it != base.end() && it->is_object() && value.is_object()) {
      merge_overlay(*it, value, p, file, sources);
      continue;
    }
    for (auto s = sources.by_path.lower_bound(p); s != sources.by_path.end() && s->first.starts_with(p);) {
      const bool inside = s->first.size() > p.size() && (s->first[p.size()] == '.' || s->first[p.size()] == '[');
      s = inside ? sources.by_path.erase(s) : std::next(s);
    }
    if (value.is_null()) {
      if (it != base.end()) base.erase(it);
      sources.by_path.erase(p);
      continue;
    }
    base[key] = value;
    sources.by_path[p] = file;
  }
}

/// A config file with its "extends" chain resolved: the merged JSON and the file each value came from.
struct merged_config {
  json value;
  merged_sources sources;
};

/// Reads `path` and, while the file just read names a base config under "extends", that base; merges each overlay
/// onto its base (see load_config_json). Errors name the file and, for a base that cannot be used, "extends".
inline merged_config load_merged(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::vector<std::pair<json, std::string>> overlays;  // (overlay without "extends", its file), the named one first
  std::vector<fs::path> chain{path};
  json j = parse_json(read_file_text(path), path.string());
  while (j.is_object() && j.contains("extends")) {
    const std::string file = chain.back().string();
    const json& extends = j["extends"];
    if (!extends.is_string() || extends.get<std::string>().empty())
      throw input_error(file + ": extends: expected the path of the base config, got " + kind(extends));
    const fs::path base = extends.get<std::string>();
    for (const fs::path& seen : chain) {
      std::error_code ec;
      if (!fs::equivalent(base, seen, ec) || ec) continue;
      std::string cycle;
      for (const fs::path& f : chain) cycle += f.string() + " -> ";
      throw input_error(file + ": extends: cycle of configs: " + cycle + base.string());
    }
    json next;
    try {
      next = parse_json(read_file_text(base), base.string());
    } catch (const error& e) {
      throw input_error(file + ": extends: " + e.what());
    }
    if (!next.is_object())
      throw input_error(file + ": extends: " + base.string() + ": expected a config object, got " + kind(next));
    j.erase("extends");
    overlays.emplace_back(std::move(j), file);
    j = std::move(next);
    chain.push_back(base);
  }
  merged_config merged{std::move(j), {chain.back().string(), {}}};
  for (auto it = overlays.rbegin(); it != overlays.rend(); ++it)
    merge_overlay(merged.value, it->first, "", it->second, merged.sources);
  return merged;
}

}  // namespace detail::config

/// Reads a config. Every key of a struct is required except std::optional members; unknown keys, missing keys,
/// wrong types, integers given as 1.5 (or 1.0), bools given as 0/1 and out-of-range numbers are errors naming
/// `source` and the full key path (e.g. "train.json: optimizer.lr: expected a number, got string \"x\"").
template <class Config>
Config from_json(const json& j, std::string_view source) {
  Config c{};
  detail::config::read(j, c, "", source);
  return c;
}

/// Writes a config; absent (nullopt) optionals are omitted, enums are written as their registered strings.
template <class Config>
json to_json(const Config& c) {
  return detail::config::write(c);
}

/*!
  ENSURES
    - returns the JSON of the config file `path`, with its overlays resolved. A file whose top-level object has the
      key "extends" is an overlay: "extends": "<path>" names its base config, absolute or relative to the working
      directory (like every path in a config, e.g. "base.config"), and the base may itself extend another. The
      result is the base with the overlay merged onto it, "extends" removed, as a JSON merge patch (RFC 7386):
      objects merge key by key, null removes the key (an optional the reader then finds absent, or a key the
      experiment's config does not have, such as SPO's loss.clip_eps in an ablation with another loss), and any
      other value (array, number, string, boolean) replaces the base's value.
    - keys are not checked here: load_config's reader refuses unknown and mistyped ones, naming the file that set them.
    - a file without "extends" is returned as parsed.
    - errors throw spo::error naming the file: those of the named file as for any file ("<path>: no such file",
      "<path>: invalid JSON: ..."); a base that cannot be used throws input_error "<overlay>: extends: <problem>",
      for a value that is not a non-empty string, a base that is missing, a directory, not valid JSON or not an
      object ("<overlay>: extends: <base>: no such file"), or a cycle ("<overlay>: extends: cycle of configs:
      a.json -> b.json -> a.json").
!*/
inline json load_config_json(const std::filesystem::path& path) { return detail::config::load_merged(path).value; }

/// Reads and parses a config file, resolving its overlays (load_config_json); read and JSON syntax errors (with
/// nlohmann's line and column) name the path, and each reader error names the file that set the value at fault
/// (an overlay for the values it sets, else the base config at the end of the chain).
template <class Config>
Config load_config(const std::filesystem::path& path) {
  const auto merged = detail::config::load_merged(path);
  Config c{};
  detail::config::read(merged.value, c, "", merged.sources);
  return c;
}

/// Runs `check()`, the validation of a config read from `file`; a config_error it throws ("<key>: <problem>") is
/// rethrown as input_error "<file>: <key>: <problem>", the form of every config error. Other errors pass unchanged.
template <class F>
decltype(auto) in_config_file(const std::filesystem::path& file, F&& check) {
  try {
    return std::forward<F>(check)();
  } catch (const config_error& e) {
    throw input_error(file.string() + ": " + e.what());
  }
}

/// Writes the config atomically as indented JSON.
template <class Config>
void save_config(const std::filesystem::path& path, const Config& c) {
  write_file_atomic(path, to_json(c).dump(2) + "\n");
}

}  // namespace spo::io
