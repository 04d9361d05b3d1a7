// SPDX-License-Identifier: MIT
/// @brief Compute in UNet forward-equivalents (docs/algorithm.md 5.4): the unit, the records that artifacts (pair sets,
/// preference models) carry of what they cost, and the budget section of the experiment configs.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <boost/hana/define_struct.hpp>
#include <nlohmann/json.hpp>

#include "spo/core/error.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/config.hpp"
#include "spo/nn/compute_meter.hpp"
#include "spo/nn/grad_mode.hpp"
#include "spo/tensor/tensor.hpp"

namespace spo::train {

/// The networks whose compute is not charged: the oracle rater stands for the people who label (its queries are
/// counted as labels, rater_queries, not as compute).
inline bool charged_network(std::string_view name) { return name != "rater"; }

/// Charged floating-point operations of `m` in units of `unit_flops` (one UNet forward of one row).
inline double forward_equivalents(const nn::ComputeMeter& m, double unit_flops) {
  SPO_CHECK(unit_flops > 0, "forward_equivalents: the unit must be positive, got " << unit_flops);
  double f = 0;
  for (const auto& [name, c] : m.networks)
    if (charged_network(name)) f += c.flops();
  return f / unit_flops;
}

/// Rows the oracle rater scored in `m`.
inline std::int64_t rater_queries(const nn::ComputeMeter& m) { return m.at("rater").forward_rows; }

/*!
  ENSURES
    - returns the floating-point operations of one forward of `model` (a text-conditioned denoiser:
      forward(x, t, prompts)) on one row [1, channels, resolution, resolution] with the empty prompt: the unit of
      every compute figure ("UNet forward-equivalents"); the text encoder's lookups are not part of it
!*/
template <class Model>
double unet_row_flops(Model& model, std::int64_t channels, std::int64_t resolution) {
  using T = typename Model::scalar_type;
  using D = typename Model::device_type;
  nn::no_grad_guard ng;
  nn::ComputeMeter m;
  {
    const nn::MeterScope scope(m);
    const std::vector<std::string> prompt(1);
    model.forward(Tensor<T, D>(Shape{1, channels, resolution, resolution}), Tensor<T, D>(Shape{1}), prompt);
  }
  const double f = m.at("unet").forward_flops;
  SPO_CHECK(f > 0 && m.at("unet").forward_rows == 1, "unet_row_flops: the model's forward counted no UNet row");
  return f;
}

/*!
  WHAT THIS REPRESENTS
    What an artifact cost to make (compute.json beside it): its own metered compute, the unit it is expressed in,
    and the records of the artifacts it was made from (a step-aware preference model: its initialisation and the
    preference pairs it was trained on), so that a method using it is charged the whole chain once.
!*/
struct ComputeRecord {
  std::string what;  ///< "make_pairs", "train_spm", ...
  double unit_flops = 0;
  nn::ComputeMeter own;
  std::map<std::string, ComputeRecord> inputs;
  std::map<std::string, std::string> missing_inputs;  ///< inputs made without a record: key -> artifact path

  double own_forward_equivalents() const { return train::forward_equivalents(own, unit_flops); }
  /// Own plus the inputs', each artifact of the chain counted once (a step-aware model's pairs reach it twice: as
  /// its own input and through the clean model it starts from).
  double forward_equivalents() const {
    double f = 0;
    for (const auto& [key, r] : chain()) f += r->own_forward_equivalents();
    return f;
  }
  std::int64_t rater_queries() const {
    std::int64_t n = 0;
    for (const auto& [key, r] : chain()) n += train::rater_queries(r->own);
    return n;
  }
  /// Every record of the chain by identity (what made it and what it metered), this one included.
  std::map<std::string, const ComputeRecord*> chain() const {
    std::map<std::string, const ComputeRecord*> seen;
    collect(seen);
    return seen;
  }
  void collect(std::map<std::string, const ComputeRecord*>& seen) const {
    seen.emplace(what + "|" + nn::to_json(own).dump(), this);
    for (const auto& [k, r] : inputs) r.collect(seen);
  }
};

inline nlohmann::json to_json(const ComputeRecord& r) {
  nlohmann::json inputs = nlohmann::json::object();
  for (const auto& [k, v] : r.inputs) inputs[k] = to_json(v);
  return {{"what", r.what},
          {"unit", {{"network", "unet"}, {"flops_per_row", r.unit_flops}}},
          {"own", nn::to_json(r.own)},
          {"own_forward_equivalents", r.own_forward_equivalents()},
          {"forward_equivalents", r.forward_equivalents()},
          {"rater_queries", r.rater_queries()},
          {"inputs", inputs},
          {"missing_inputs", r.missing_inputs}};
}

inline ComputeRecord compute_record_from_json(const nlohmann::json& j) {
  ComputeRecord r;
  r.what = j.at("what").get<std::string>();
  r.unit_flops = j.at("unit").at("flops_per_row").get<double>();
  r.own = nn::compute_meter_from_json(j.at("own"));
  for (const auto& [k, v] : j.at("inputs").items()) r.inputs.emplace(k, compute_record_from_json(v));
  r.missing_inputs = j.at("missing_inputs").get<std::map<std::string, std::string>>();
  return r;
}

/// The compute record of the artifact at `artifact` (a file): compute.json in its folder.
inline std::filesystem::path compute_record_path(const std::filesystem::path& artifact) {
  return artifact.parent_path() / "compute.json";
}

/// Reads the record of `artifact`; throws naming the file when it is missing or malformed, or when its unit differs
/// from `unit_flops` (a record of another base model).
inline ComputeRecord load_compute_record(const std::filesystem::path& artifact, double unit_flops) {
  const auto path = compute_record_path(artifact);
  SPO_EXPECT(std::filesystem::exists(path), "no compute record " << path.string() << " beside " << artifact.string()
                                                                 << "; the binary that makes this artifact writes it");
  ComputeRecord r;
  try {
    r = compute_record_from_json(nlohmann::json::parse(io::read_file_text(path)));
  } catch (const nlohmann::json::exception& e) {
    throw input_error("compute record " + path.string() + " is malformed: " + e.what());
  }
  SPO_EXPECT(std::abs(r.unit_flops - unit_flops) <= 1e-9 * unit_flops,
             "compute record " << path.string() << " is in units of " << r.unit_flops << " flops per UNet row, this "
                               << "base model's unit is " << unit_flops << " (a record of another model)");
  auto check_complete = [&](const auto& self, const ComputeRecord& c) -> void {
    for (const auto& [key, artifact] : c.missing_inputs)
      throw input_error("compute record " + path.string() + " is incomplete: its input " + key + " (" + artifact +
                        ") was made without a compute record, so the charge would be too low; remake that input");
    for (const auto& [key, in] : c.inputs) self(self, in);
  };
  check_complete(check_complete, r);
  return r;
}

/// The record of an input artifact for a record being made: its compute.json when present (into `into.inputs`),
/// else the artifact is listed in `into.missing_inputs`.
inline void add_input_record(ComputeRecord& into, const std::string& key, const std::filesystem::path& artifact) {
  const auto path = compute_record_path(artifact);
  if (!std::filesystem::exists(path)) {
    into.missing_inputs[key] = artifact.string();
    return;
  }
  try {
    into.inputs.emplace(key, compute_record_from_json(nlohmann::json::parse(io::read_file_text(path))));
  } catch (const nlohmann::json::exception& e) {
    throw input_error("compute record " + path.string() + " is malformed: " + e.what());
  }
}

/// Writes <dir>/compute.json atomically.
inline void save_compute_record(const std::filesystem::path& dir, const ComputeRecord& r) {
  io::write_file_atomic(dir / "compute.json", to_json(r).dump(2) + "\n");
}

/*!
  WHAT THIS REPRESENTS
    The optional "budget" section of an experiment config: train until the charged compute reaches
    forward_equivalents (train.rounds stays a cap; the round that crosses the budget completes), with progress
    evaluations each time the compute crosses a multiple of progress_every (0: only progress_every_rounds), and the
    LoRA weights saved as lora_fe<N>.safetensors when it crosses each of `snapshots`. charge_inputs: the compute
    records of the method's inputs (its preference model, its preference pairs) count from the start, as the
    paper's accounting charges the preference model's training to SPO.
!*/
struct BudgetSection {
  BOOST_HANA_DEFINE_STRUCT(BudgetSection, (double, forward_equivalents), (bool, charge_inputs),
                           (double, progress_every), (std::vector<double>, snapshots));
};

inline void validate(const BudgetSection& b) {
  SPO_CONFIG_CHECK(std::isfinite(b.forward_equivalents) && b.forward_equivalents > 0, "budget.forward_equivalents",
                   "must be finite and > 0, got " << b.forward_equivalents);
  SPO_CONFIG_CHECK(std::isfinite(b.progress_every) && b.progress_every >= 0, "budget.progress_every",
                   "must be finite and >= 0, got " << b.progress_every);
  for (std::size_t i = 0; i < b.snapshots.size(); ++i)
    SPO_CONFIG_CHECK(std::isfinite(b.snapshots[i]) && b.snapshots[i] > 0 && b.snapshots[i] <= b.forward_equivalents,
                     "budget.snapshots[" + std::to_string(i) + "]",
                     "must be in (0, forward_equivalents = " << b.forward_equivalents << "], got " << b.snapshots[i]);
}

/// True when [before, after) crossed a positive multiple of `every` (every > 0).
inline bool crossed_multiple(double before, double after, double every) {
  return every > 0 && std::floor(after / every) > std::floor(before / every);
}

}  // namespace spo::train
