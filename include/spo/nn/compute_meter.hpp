// SPDX-License-Identifier: MIT
/// @brief Counting compute by network (docs/algorithm.md 5.4): the layers report the floating-point operations of their
/// GEMMs and convolutions, the networks report the rows (samples) they process, into the meter active on the thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace spo::nn {

enum class Pass { forward, backward };

/// What one network computed: rows through its forward and backward, and the floating-point operations (2 per
/// multiply-add) of the GEMMs, convolutions and attention products its layers ran in each pass.
struct NetworkCompute {
  std::int64_t forward_rows = 0, backward_rows = 0;
  double forward_flops = 0, backward_flops = 0;

  double flops() const { return forward_flops + backward_flops; }
  NetworkCompute& operator+=(const NetworkCompute& o) {
    forward_rows += o.forward_rows;
    backward_rows += o.backward_rows;
    forward_flops += o.forward_flops;
    backward_flops += o.backward_flops;
    return *this;
  }
  friend bool operator==(const NetworkCompute&, const NetworkCompute&) = default;
};

/*!
  WHAT THIS REPRESENTS
    The compute of a stretch of work, by network name ("unet", "preference_model", "rater", ...; layers that run
    outside any named network count as "other"). Active on one thread between a MeterScope's construction and
    destruction; nothing is counted while no meter is active (the layers' cost is one thread-local test).
!*/
struct ComputeMeter {
  std::map<std::string, NetworkCompute, std::less<>> networks;

  NetworkCompute& operator[](std::string_view name) {
    auto it = networks.find(name);
    if (it == networks.end()) it = networks.emplace(std::string(name), NetworkCompute{}).first;
    return it->second;
  }
  NetworkCompute at(std::string_view name) const {
    const auto it = networks.find(name);
    return it == networks.end() ? NetworkCompute{} : it->second;
  }
  ComputeMeter& operator+=(const ComputeMeter& o) {
    for (const auto& [name, c] : o.networks) (*this)[name] += c;
    return *this;
  }
  friend bool operator==(const ComputeMeter&, const ComputeMeter&) = default;
};

inline nlohmann::json to_json(const ComputeMeter& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, c] : m.networks)
    j[name] = {{"forward_rows", c.forward_rows},
               {"backward_rows", c.backward_rows},
               {"forward_flops", c.forward_flops},
               {"backward_flops", c.backward_flops}};
  return j;
}

/// The inverse of to_json; throws nlohmann::json's errors on a malformed record.
inline ComputeMeter compute_meter_from_json(const nlohmann::json& j) {
  ComputeMeter m;
  for (const auto& [name, c] : j.items())
    m[name] = NetworkCompute{c.at("forward_rows").get<std::int64_t>(), c.at("backward_rows").get<std::int64_t>(),
                             c.at("forward_flops").get<double>(), c.at("backward_flops").get<double>()};
  return m;
}

namespace meter_detail {
inline thread_local ComputeMeter* active = nullptr;
inline thread_local NetworkCompute* network = nullptr;
}  // namespace meter_detail

/// Makes `m` the thread's active meter for the scope's lifetime (the previous one is restored after).
class MeterScope {
 public:
  explicit MeterScope(ComputeMeter& m) : meter_(meter_detail::active), network_(meter_detail::network) {
    meter_detail::active = &m;
    meter_detail::network = nullptr;
  }
  ~MeterScope() {
    meter_detail::active = meter_;
    meter_detail::network = network_;
  }
  MeterScope(const MeterScope&) = delete;
  MeterScope& operator=(const MeterScope&) = delete;

 private:
  ComputeMeter* meter_;
  NetworkCompute* network_;
};

/// Pauses counting on this thread (work that is not charged, e.g. an evaluation inside a metered stretch).
class MeterPause {
 public:
  MeterPause() : meter_(meter_detail::active), network_(meter_detail::network) {
    meter_detail::active = nullptr;
    meter_detail::network = nullptr;
  }
  ~MeterPause() {
    meter_detail::active = meter_;
    meter_detail::network = network_;
  }
  MeterPause(const MeterPause&) = delete;
  MeterPause& operator=(const MeterPause&) = delete;

 private:
  ComputeMeter* meter_;
  NetworkCompute* network_;
};

/// Names the network whose layers run inside the scope and counts `rows` through its `pass` (nested scopes: the
/// innermost network is charged).
class NetworkScope {
 public:
  NetworkScope(std::string_view name, Pass pass, std::int64_t rows) : outer_(meter_detail::network) {
    if (!meter_detail::active) return;
    auto& c = (*meter_detail::active)[name];
    (pass == Pass::forward ? c.forward_rows : c.backward_rows) += rows;
    meter_detail::network = &c;
  }
  ~NetworkScope() { meter_detail::network = outer_; }
  NetworkScope(const NetworkScope&) = delete;
  NetworkScope& operator=(const NetworkScope&) = delete;

 private:
  NetworkCompute* outer_;
};

/// A layer's report: `flops` floating-point operations in `pass` (nothing when no meter is active).
inline void count_flops(Pass pass, double flops) {
  if (!meter_detail::active) return;
  NetworkCompute* c = meter_detail::network ? meter_detail::network : &(*meter_detail::active)["other"];
  (pass == Pass::forward ? c->forward_flops : c->backward_flops) += flops;
}

/// 2 m n k: the floating-point operations of an [m, k] x [k, n] product.
inline double gemm_flops(std::int64_t m, std::int64_t n, std::int64_t k) {
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

}  // namespace spo::nn
