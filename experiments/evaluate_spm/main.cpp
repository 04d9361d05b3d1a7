// SPDX-License-Identifier: MIT
// Experiment evaluate_spm: preference accuracy by timestep (SPO's SPM evaluation) of every preference-model variant
// and of the oracle rater, on the held-out validation pairs: each pair noised at t with one shared noise draw, the
// base model's one-step x0 predictions scored by each model (t = 0: the clean images), accuracy against the drawn
// labels (ties left out) and against the rater's noise-free ordering. Writes accuracy.json, accuracy.md and
// accuracy_by_timestep.png.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "spo/diffusion/scheduler_config.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/experiment/components.hpp"
#include "spo/io/config.hpp"
#include "spo/io/plot.hpp"
#include "spo/spm/evaluation.hpp"
#include "spo/spm/variant.hpp"

struct Models {
  BOOST_HANA_DEFINE_STRUCT(Models, (std::string, clean), (std::string, no_step_condition), (std::string, step_aware));
};

struct EvaluateSpmConfig {
  BOOST_HANA_DEFINE_STRUCT(EvaluateSpmConfig, (std::string, data_dir), (std::string, output_dir), (std::uint64_t, seed),
                           (spo::io::ModelFiles, base), (std::string, validation_pairs), (Models, models),
                           (spo::preference::RaterSection, rater), (std::vector<std::int64_t>, timesteps));
};

namespace {

/// Checks what the models and the base model's schedule do not: a non-empty output_dir, the timesteps, the rater's
/// weights.
void validate(const EvaluateSpmConfig& c, std::int64_t num_train_timesteps) {
  SPO_CONFIG_CHECK(!c.output_dir.empty(), "output_dir", "must not be empty");
  SPO_CONFIG_CHECK(!c.timesteps.empty(), "timesteps", "must name at least one timestep, got []");
  for (std::size_t i = 0; i < c.timesteps.size(); ++i)
    SPO_CONFIG_CHECK(
        c.timesteps[i] >= 0 && c.timesteps[i] < num_train_timesteps, "timesteps[" + std::to_string(i) + "]",
        "must be in [0, " << num_train_timesteps - 1 << "] (the base model's schedule), got " << c.timesteps[i]);
  spo::preference::validate(c.rater.weights);
}

/// The preference-model checkpoint of variant V at `path` as a preference model.
template <class V>
spo::spm::NetworkPreference<V, float> load_variant(const std::string& path) {
  return spo::spm::NetworkPreference<V, float>(spo::spm::load_preference_model<V, float>(path));
}

}  // namespace

int main(int argc, char** argv) try {
  namespace fs = std::filesystem;
  std::string config_path;
  spo::experiment::ArgumentParser args(
      "evaluate_spm",
      "Preference accuracy by timestep of every preference-model variant and of the oracle rater on the held-out "
      "validation pairs (SPO's SPM evaluation). Writes accuracy.json, accuracy.md and accuracy_by_timestep.png to "
      "the config's output_dir.");
  args.positional("config.json", "the evaluation's config (e.g. configs/evaluate_spm.json)", config_path);
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;

  // Every check and every load that can fail comes before the output directory.
  const auto c = spo::io::load_config<EvaluateSpmConfig>(config_path);
  using Model = spo::model::FashionModel<float>;
  auto base = spo::experiment::load_base_model<Model>(c.base);
  spo::io::in_config_file(config_path, [&] { validate(c, base.config.schedule.num_train_timesteps); });
  auto ddim = spo::diffusion::make_scheduler<spo::diffusion::LinearBetas, spo::diffusion::EpsilonPrediction>(
      base.config.schedule);
  ddim.set_timesteps(base.config.sampling.num_inference_steps);
  const auto pairs = spo::preference::load_pairs(c.validation_pairs);
  auto clean = load_variant<spo::spm::CleanPM>(c.models.clean);
  auto no_step_condition = load_variant<spo::spm::NoStepConditionPM>(c.models.no_step_condition);
  auto step_aware = load_variant<spo::spm::StepAwarePM>(c.models.step_aware);
  spo::preference::RaterPreference<spo::preference::OracleRater<float>> oracle(spo::io::in_config_file(
      config_path,
      [&] { return spo::experiment::load_oracle_rater<float>(c.rater, c.data_dir, base.config.resolution); }));
  const fs::path out = c.output_dir;
  fs::create_directories(out);

  std::fprintf(stderr, "evaluate_spm: %lld validation pairs; computing the noised views\n",
               static_cast<long long>(pairs.size()));
  const auto views = spo::spm::make_validation_views(base.model, ddim, pairs, c.timesteps, c.seed,
                                                     base.config.sampling.guidance_scale);

  nlohmann::json result{{"pairs", pairs.size()}, {"timesteps", c.timesteps}, {"models", nlohmann::json::object()}};
  std::vector<spo::io::Series> label_series, order_series;
  auto record = [&](const std::string& name, const std::vector<spo::spm::TimestepAccuracy>& acc) {
    spo::io::Series sl{name, {}, {}}, so{name, {}, {}};
    for (const auto& a : acc) {
      result["models"][name].push_back(
          {{"t", a.t}, {"label_accuracy", a.label_accuracy}, {"order_accuracy", a.order_accuracy}});
      sl.xs.push_back(static_cast<double>(a.t));
      sl.ys.push_back(a.label_accuracy);
      so.xs.push_back(static_cast<double>(a.t));
      so.ys.push_back(a.order_accuracy);
    }
    label_series.push_back(sl);
    order_series.push_back(so);
  };
  record("clean (PickScore role)", spo::spm::accuracy_by_timestep(clean, views));
  record("w/o step condition", spo::spm::accuracy_by_timestep(no_step_condition, views));
  record("step-aware (SPM)", spo::spm::accuracy_by_timestep(step_aware, views));
  record("oracle rater (upper bound)", spo::spm::accuracy_by_timestep(oracle, views));
  std::string md = "| model |";
  for (auto t : c.timesteps) md += " t = " + std::to_string(t) + " |";
  md += "\n|---|";
  for (std::size_t i = 0; i < c.timesteps.size(); ++i) md += "---:|";
  md += "\n";
  for (std::size_t m = 0; m < label_series.size(); ++m) {
    md += "| " + label_series[m].name + " |";
    for (std::size_t i = 0; i < c.timesteps.size(); ++i) {
      char cell[64];
      std::snprintf(cell, sizeof cell, " %.3f (%.3f) |", label_series[m].ys[i], order_series[m].ys[i]);
      md += cell;
    }
    md += "\n";
  }
  spo::io::write_file_atomic(out / "accuracy.json", result.dump(2) + "\n");
  spo::io::write_file_atomic(out / "accuracy.md", md);
  spo::io::write_line_chart(
      out / "accuracy_by_timestep.png",
      spo::io::LineChart{"Accuracy by timestep, held-out pairs", "timestep t", "accuracy", label_series});
  std::printf("accuracy against the drawn labels (against the rater's noise-free order):\n%s", md.c_str());
  return 0;
} catch (const std::exception& e) {
  std::cerr << "evaluate_spm: error: " << e.what() << "\n";
  return 1;
}
