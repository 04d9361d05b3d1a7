// SPDX-License-Identifier: MIT
// summarize_runs: collects results.json of several runs of an experiment (e.g. seeds) and reports each metric's mean
// over runs with its 95% Student-t interval, beside the base model's (identical in every run: fixed evaluation
// seeds). Writes summary.json and summary.md.
//   summarize_runs <output_dir> <run_dir> [<run_dir> ...]
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "spo/eval/statistics.hpp"
#include "spo/experiment/command_line.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/json.hpp"
#include "spo/io/plot.hpp"

namespace {

namespace fs = std::filesystem;

/// The number at the key path `path` in `j`, read from `file`; throws spo::input_error naming both.
double number_at(const nlohmann::json& j, const std::vector<std::string>& path, const fs::path& file) {
  const nlohmann::json* at = &j;
  std::string where;
  for (const auto& key : path) {
    where += where.empty() ? key : "." + key;
    SPO_EXPECT(at->is_object() && at->contains(key), file.string() << ": \"" << where << "\" is missing");
    at = &(*at)[key];
  }
  SPO_EXPECT(at->is_number(), file.string() << ": \"" << where << "\" is not a number: " << at->dump());
  return at->get<double>();
}

}  // namespace

int main(int argc, char** argv) try {
  std::string out_dir;
  std::vector<std::string> run_dirs;
  spo::experiment::ArgumentParser args(
      "summarize_runs",
      "Collects results.json (and progress.jsonl) of several runs of one experiment, e.g. over seeds, and reports "
      "each metric's mean over runs with its 95% Student-t interval beside the base model's. Writes summary.json, "
      "summary.md and reward_vs_time.png to <output_dir>.");
  args.positional("output_dir", "the directory to write", out_dir)
      .positional("run_dir", "the output directory of a run (its results.json)", run_dirs);
  if (const auto exit_code = args.parse_main(argc, argv)) return *exit_code;

  // Every run is read and checked before the output directory.
  const std::vector<std::string> metrics{"reward_mean", "alignment", "quality", "class_accuracy", "frechet"};
  std::map<std::string, std::vector<double>> tuned, win;
  nlohmann::json base, runs = nlohmann::json::array();
  std::string name;
  std::vector<spo::io::Series> curves;
  for (const auto& dir : run_dirs) {
    const fs::path progress_file = fs::path(dir) / "progress.jsonl";
    if (std::ifstream progress(progress_file); progress) {
      spo::io::Series c{fs::path(dir).filename().string(), {}, {}};
      for (std::string line; std::getline(progress, line);) {
        if (line.empty()) continue;
        const auto r = spo::io::parse_json(line, progress_file.string());
        c.xs.push_back(number_at(r, {"train_wall_s"}, progress_file) / 60.0);
        c.ys.push_back(number_at(r, {"reward_mean"}, progress_file));
      }
      if (c.xs.size() >= 2) curves.push_back(std::move(c));
    }
    const fs::path f = fs::path(dir) / "results.json";
    const auto j = spo::io::parse_json(spo::io::read_file_text(f), f.string());
    SPO_EXPECT(j.is_object() && j.contains("base") && j.contains("experiment") && j["experiment"].is_object(),
               f.string() << ": not a results file of an SPO experiment (no \"base\" or \"experiment\")");
    std::string run_name;
    for (const auto& [k, v] : j.items())
      if (k != "base" && k != "experiment" && k != "wall_s" && k != "win_rate_vs_base") run_name = k;
    SPO_EXPECT(!run_name.empty(), f.string() << ": no tuned model in the results");
    SPO_EXPECT(name.empty() || run_name == name, f.string() << ": the tuned model is \"" << run_name
                                                            << "\", but the runs before it have \"" << name << "\"");
    name = run_name;
    for (const auto& m : metrics) number_at(j, {"base", m}, f);
    const nlohmann::json ci =
        j["base"].is_object() ? j["base"].value("reward_ci95", nlohmann::json()) : nlohmann::json();
    SPO_EXPECT(ci.is_array() && ci.size() == 2 && ci[0].is_number() && ci[1].is_number(),
               f.string() << ": \"base.reward_ci95\" is not a pair of numbers");
    if (base.is_null()) base = j["base"];
    for (const auto& m : metrics) tuned[m].push_back(number_at(j, {name, m}, f));
    win["rate"].push_back(number_at(j, {"win_rate_vs_base", "rate"}, f));
    tuned["wall_s"].push_back(number_at(j, {"wall_s"}, f));
    runs.push_back({{"dir", dir},
                    {"seed", j["experiment"].value("seed", nlohmann::json())},
                    {"reward_mean", j[name]["reward_mean"]},
                    {"win_rate", j["win_rate_vs_base"]["rate"]},
                    {"frechet", j[name]["frechet"]}});
  }
  const fs::path out = out_dir;
  fs::create_directories(out);
  nlohmann::json summary{{"runs", runs}, {"base", base}, {"tuned", nlohmann::json::object()}};
  std::string md = "| metric | base (95% CI over images) | " + name + " mean over " + std::to_string(run_dirs.size()) +
                   " runs (95% CI over runs) |\n|---|---:|---:|\n";
  char buf[256];
  auto cell = [&](const spo::eval::Summary& s) {
    std::snprintf(buf, sizeof buf, "%.4f [%.4f, %.4f]", s.mean, s.ci95_low, s.ci95_high);
    return std::string(buf);
  };
  for (const auto& m : metrics) {
    const auto s = spo::eval::summarize(tuned[m]);
    summary["tuned"][m] = {{"mean", s.mean}, {"std", s.std}, {"ci95", {s.ci95_low, s.ci95_high}}, {"values", tuned[m]}};
    std::string b;
    if (m == "reward_mean") {
      std::snprintf(buf, sizeof buf, "%.4f [%.4f, %.4f]", base[m].get<double>(), base["reward_ci95"][0].get<double>(),
                    base["reward_ci95"][1].get<double>());
      b = buf;
    } else {
      std::snprintf(buf, sizeof buf, "%.4f", base[m].get<double>());
      b = buf;
    }
    md += "| " + m + " | " + b + " | " + cell(s) + " |\n";
  }
  const auto w = spo::eval::summarize(win["rate"]);
  summary["tuned"]["win_rate_vs_base"] = {
      {"mean", w.mean}, {"ci95", {w.ci95_low, w.ci95_high}}, {"values", win["rate"]}};
  md += "| win rate vs base | 0.5 | " + cell(w) + " |\n";
  const auto t = spo::eval::summarize(tuned["wall_s"]);
  std::snprintf(buf, sizeof buf, "| wall-clock per run (s) | | %.0f [%.0f, %.0f] |\n", t.mean, t.ci95_low, t.ci95_high);
  md += buf;
  if (!curves.empty())
    spo::io::write_line_chart(out / "reward_vs_time.png",
                              spo::io::LineChart{"Rater reward during training", "training wall-clock (min)",
                                                 "mean reward (progress eval)", curves});
  spo::io::write_file_atomic(out / "summary.json", summary.dump(2) + "\n");
  spo::io::write_file_atomic(out / "summary.md", md);
  std::printf("%s", md.c_str());
  return 0;
} catch (const std::exception& e) {
  std::cerr << "summarize_runs: error: " << e.what() << "\n";
  return 1;
}
