// SPDX-License-Identifier: MIT
// summarize_runs: collects results.json of several runs of an experiment (e.g. seeds) and reports each metric's mean
// over runs with its 95% Student-t interval, beside the base model's (identical in every run: fixed evaluation
// seeds). Writes summary.json and summary.md.
//   summarize_runs <output_dir> <run_dir> [<run_dir> ...]
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <vector>

#include "spo/eval/statistics.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/json.hpp"
#include "spo/io/plot.hpp"

#include <fstream>

int main(int argc, char** argv) try {
  namespace fs = std::filesystem;
  if (argc < 3) {
    std::cerr << "usage: summarize_runs <output_dir> <run_dir> [<run_dir> ...]\n";
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out);
  const std::vector<std::string> metrics{"reward_mean", "alignment", "quality", "class_accuracy", "frechet"};
  std::map<std::string, std::vector<double>> tuned, win;
  nlohmann::json base, runs = nlohmann::json::array();
  std::string name;
  std::vector<spo::io::Series> curves;
  for (int i = 2; i < argc; ++i) {
    if (std::ifstream progress(fs::path(argv[i]) / "progress.jsonl"); progress) {
      spo::io::Series c{fs::path(argv[i]).filename().string(), {}, {}};
      for (std::string line; std::getline(progress, line);) {
        if (line.empty()) continue;
        const auto r = spo::io::parse_json(line, (fs::path(argv[i]) / "progress.jsonl").string());
        c.xs.push_back(r["train_wall_s"].get<double>() / 60.0);
        c.ys.push_back(r["reward_mean"].get<double>());
      }
      if (c.xs.size() >= 2) curves.push_back(std::move(c));
    }
    const fs::path f = fs::path(argv[i]) / "results.json";
    const auto j = spo::io::parse_json(spo::io::read_file_text(f), f.string());
    SPO_CHECK(j.contains("base") && j.contains("experiment"), f << ": not a results file of an SPO experiment");
    for (const auto& [k, v] : j.items())
      if (k != "base" && k != "experiment" && k != "wall_s" && k != "win_rate_vs_base") name = k;
    SPO_CHECK(!name.empty() && j.contains(name), f << ": no tuned model in the results");
    if (base.is_null()) base = j["base"];
    for (const auto& m : metrics) tuned[m].push_back(j[name][m].get<double>());
    win["rate"].push_back(j["win_rate_vs_base"]["rate"].get<double>());
    tuned["wall_s"].push_back(j["wall_s"].get<double>());
    runs.push_back({{"dir", argv[i]}, {"seed", j["experiment"]["seed"]}, {"reward_mean", j[name]["reward_mean"]},
                    {"win_rate", j["win_rate_vs_base"]["rate"]}, {"frechet", j[name]["frechet"]}});
  }
  nlohmann::json summary{{"runs", runs}, {"base", base}, {"tuned", nlohmann::json::object()}};
  std::string md = "| metric | base (95% CI over images) | " + name + " mean over " + std::to_string(argc - 2) +
                   " runs (95% CI over runs) |\n|---|---:|---:|\n";
  char buf[256];
  auto cell = [&](const spo::eval::Summary& s) {
    std::snprintf(buf, sizeof buf, "%.4f [%.4f, %.4f]", s.mean, s.ci95_low, s.ci95_high);
    return std::string(buf);
  };
  for (const auto& m : metrics) {
    const auto s = spo::eval::summarize(tuned[m]);
    summary["tuned"][m] = {{"mean", s.mean}, {"std", s.std}, {"ci95", {s.ci95_low, s.ci95_high}}, {"values", tuned[m]}};
    std::string b = std::to_string(base[m].get<double>());
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
  summary["tuned"]["win_rate_vs_base"] = {{"mean", w.mean}, {"ci95", {w.ci95_low, w.ci95_high}}, {"values", win["rate"]}};
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
