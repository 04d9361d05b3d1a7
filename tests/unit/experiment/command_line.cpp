// SPDX-License-Identifier: MIT
#include "spo/experiment/command_line.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

using namespace spo;
using namespace spo::experiment;

namespace {

/// The arguments of the sample binary, declared as sample declares them.
struct SampleArgs {
  std::string config, weights, out;
  std::vector<std::string> prompts;
  int per_prompt = 8;
  std::uint64_t seed = 0;
  std::optional<int> steps;
  std::optional<double> eta, guidance;
  bool verbose = false;

  ArgumentParser parser() {
    ArgumentParser p("sample", "Writes a PNG grid of samples.");
    p.positional("model_config.json", "the model's config", config)
        .option("--weights", "FILE", "the model weights", weights)
        .required()
        .option("--out", "FILE.png", "the grid to write", out)
        .required()
        .option("--prompt", "TEXT", "a prompt", prompts)
        .option("--per-prompt", "N", "images per prompt", per_prompt, 1, 1024)
        .option("--seed", "N", "the sampling seed", seed)
        .option("--steps", "N", "DDIM steps", steps, 1, std::numeric_limits<int>::max())
        .option("--eta", "X", "the DDIM eta", eta, 0.0, 1.0)
        .option("--guidance", "X", "the guidance scale", guidance, 0.0, 100.0)
        .flag("--verbose", "say more", verbose);
    return p;
  }
};

/// Parses `args` with a fresh SampleArgs; returns the filled arguments.
SampleArgs parse_sample(std::vector<std::string> args) {
  SampleArgs a;
  auto p = a.parser();
  CHECK(p.parse(args) == ArgumentParser::Outcome::run);
  return a;
}

/// The message of the input_error that parsing `args` throws ("" when none).
std::string sample_error(std::vector<std::string> args) {
  SampleArgs a;
  auto p = a.parser();
  try {
    p.parse(args);
  } catch (const input_error& e) {
    return e.what();
  }
  return "";
}

const std::vector<std::string> required_args{"cfg.json", "--weights", "w.safetensors", "--out", "x.png"};

std::vector<std::string> with(std::vector<std::string> extra) {
  auto args = required_args;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

/// Runs parse_command_line on `args` (argv[0] is "spo"); `out` and `err` receive what it prints.
ParsedCommandLine run_command_line(std::vector<std::string> args, std::string& out, std::string& err,
                                   const std::string& length_flag = "rounds") {
  std::vector<const char*> argv{"build/bin/spo"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream o, e;
  auto r = parse_command_line(static_cast<int>(argv.size()), argv.data(), length_flag, o, e);
  out = o.str();
  err = e.str();
  return r;
}

}  // namespace

TEST_CASE("command line: both value syntaxes, defaults kept, options anywhere") {
  const auto a = parse_sample({"--weights=w.safetensors", "cfg.json", "--out", "x.png", "--per-prompt=3", "--seed",
                               "18446744073709551615", "--eta", "0.25", "--guidance=7.5", "--steps", "10"});
  CHECK(a.config == "cfg.json");
  CHECK(a.weights == "w.safetensors");
  CHECK(a.out == "x.png");
  CHECK(a.per_prompt == 3);
  CHECK(a.seed == std::numeric_limits<std::uint64_t>::max());
  CHECK(a.eta == 0.25);
  CHECK(a.guidance == 7.5);
  CHECK(a.steps == 10);
  CHECK(a.prompts.empty());
  CHECK_FALSE(a.verbose);

  const auto d = parse_sample(required_args);
  CHECK(d.per_prompt == 8);
  CHECK(d.seed == 0);
  CHECK_FALSE(d.steps.has_value());
  CHECK_FALSE(d.eta.has_value());
}

TEST_CASE("command line: negative numbers and values starting with '-' are values") {
  int offset = 0;
  std::string text;
  ArgumentParser p("p", "");
  p.option("--offset", "N", "", offset, -10, 10).option("--text", "S", "", text);
  CHECK(p.parse(std::vector<std::string>{"--offset", "-3", "--text", "-x"}) == ArgumentParser::Outcome::run);
  CHECK(offset == -3);
  CHECK(text == "-x");
}

TEST_CASE("command line: repeated options collect every value in order") {
  const auto a = parse_sample(with({"--prompt", "a photo of a dress", "--prompt=a bag", "--prompt", "a=b"}));
  CHECK(a.prompts == std::vector<std::string>{"a photo of a dress", "a bag", "a=b"});
}

TEST_CASE("command line: the tester's cases of sample") {
  // Each was accepted or failed with an unhelpful message before: stoi's "stoi", stoull wrapping -1 to 2^64-1, a
  // huge count running into bad_alloc.
  CHECK(sample_error(with({"--per-prompt", "abc"})) == "--per-prompt: expected an integer in [1, 1024], got 'abc'");
  CHECK(sample_error(with({"--seed", "-1"})) == "--seed: expected a non-negative integer, got '-1'");
  CHECK(sample_error(with({"--seed=-1"})) == "--seed: expected a non-negative integer, got '-1'");
  CHECK(sample_error(with({"--per-prompt", "100000000"})) ==
        "--per-prompt: expected an integer in [1, 1024], got '100000000'");
  CHECK(sample_error(with({"--per-prompt", "99999999999999999999"})) ==
        "--per-prompt: expected an integer in [1, 1024], got '99999999999999999999'");
}

TEST_CASE("command line: numbers are the whole value, of the target's type and within the range") {
  CHECK(sample_error(with({"--per-prompt", "12x"})) == "--per-prompt: expected an integer in [1, 1024], got '12x'");
  CHECK(sample_error(with({"--per-prompt", "0"})) == "--per-prompt: expected an integer in [1, 1024], got '0'");
  CHECK(sample_error(with({"--per-prompt", "1025"})) == "--per-prompt: expected an integer in [1, 1024], got '1025'");
  CHECK(sample_error(with({"--per-prompt", "+3"})) == "--per-prompt: expected an integer in [1, 1024], got '+3'");
  CHECK(sample_error(with({"--per-prompt", " 3"})) == "--per-prompt: expected an integer in [1, 1024], got ' 3'");
  CHECK(sample_error(with({"--per-prompt", "3.0"})) == "--per-prompt: expected an integer in [1, 1024], got '3.0'");
  CHECK(sample_error(with({"--per-prompt="})) == "--per-prompt: expected an integer in [1, 1024], got ''");
  CHECK(sample_error(with({"--seed", "18446744073709551616"})) ==
        "--seed: expected a non-negative integer, got '18446744073709551616'");
  CHECK(sample_error(with({"--seed", "+1"})) == "--seed: expected a non-negative integer, got '+1'");
  CHECK(sample_error(with({"--seed", "0x10"})) == "--seed: expected a non-negative integer, got '0x10'");
  CHECK(sample_error(with({"--steps", "0"})) == "--steps: expected an integer >= 1, got '0'");
  CHECK(sample_error(with({"--steps", "2147483648"})) == "--steps: expected an integer >= 1, got '2147483648'");
}

TEST_CASE("command line: floating-point values are finite and within the range") {
  CHECK(sample_error(with({"--eta", "nan"})) == "--eta: expected a number in [0, 1], got 'nan'");
  CHECK(sample_error(with({"--eta", "inf"})) == "--eta: expected a number in [0, 1], got 'inf'");
  CHECK(sample_error(with({"--eta", "1.5"})) == "--eta: expected a number in [0, 1], got '1.5'");
  CHECK(sample_error(with({"--eta", "0.5x"})) == "--eta: expected a number in [0, 1], got '0.5x'");
  CHECK(sample_error(with({"--guidance", "1e999"})) == "--guidance: expected a number in [0, 100], got '1e999'");
  CHECK(sample_error(with({"--guidance", "-0.5"})) == "--guidance: expected a number in [0, 100], got '-0.5'");
  CHECK(parse_sample(with({"--eta", "1e-1"})).eta == 0.1);

  double any = 0;
  ArgumentParser p("p", "");
  p.option("--x", "X", "", any);
  auto error_of = [&](const std::string& v) {
    try {
      p.parse(std::vector<std::string>{"--x", v});
    } catch (const input_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(error_of("-inf") == "--x: expected a finite number, got '-inf'");
  CHECK(error_of("NaN") == "--x: expected a finite number, got 'NaN'");
  CHECK(error_of("-2.5e3").empty());
  CHECK(any == -2500.0);
}

TEST_CASE("command line: unknown options, missing values, flags with values, repeats") {
  CHECK(sample_error(with({"--per_prompt", "3"})) == "unknown option '--per_prompt' (did you mean --per-prompt?)");
  CHECK(sample_error(with({"--frobnicate"})) == "unknown option '--frobnicate'");
  CHECK(sample_error(with({"-x"})) == "unknown option '-x'");
  CHECK(sample_error(with({"--seed"})) == "--seed: missing value (--seed N)");
  CHECK(sample_error(with({"--prompt", "--seed", "3"})) == "--prompt: missing value (--prompt TEXT)");
  CHECK(sample_error(with({"--seed", "3", "--seed=4"})) == "--seed: given more than once ('3', then '4')");
  CHECK(sample_error({"cfg.json", "--weights", "a", "--weights", "b", "--out", "x.png"}) ==
        "--weights: given more than once ('a', then 'b')");
  CHECK(sample_error(with({"--verbose=yes"})) == "--verbose: takes no value, got 'yes'");
  CHECK(sample_error(with({"--verbose", "--verbose"})) == "--verbose: given more than once");
  CHECK(sample_error(with({"--out=", "y.png"})).starts_with("--out: given more than once"));
  CHECK(sample_error({"cfg.json", "--weights=", "--out", "x.png"}) == "--weights: expected a non-empty value, got ''");
  CHECK(parse_sample(with({"--verbose"})).verbose);
}

TEST_CASE("command line: required options and positionals, unexpected positionals") {
  CHECK(sample_error({}) == "missing argument <model_config.json>");
  CHECK(sample_error({"cfg.json", "--out", "x.png"}) == "missing required option --weights FILE");
  CHECK(sample_error({"cfg.json", "--weights", "w"}) == "missing required option --out FILE.png");
  CHECK(sample_error(with({"extra"})) == "unexpected argument 'extra'");
  // After "--" everything is a positional, even what looks like an option.
  CHECK(sample_error({"--weights", "w", "--out", "x.png", "--", "--cfg.json"}) == "");
}

TEST_CASE("command line: optional, numeric and repeated positionals") {
  int steps = 1000;
  double lr = 0.01;
  ArgumentParser q("quickstart", "");
  q.positional("steps", "", steps, 1, 1000000).optional().positional("learning_rate", "", lr, 1e-9, 1.0).optional();
  CHECK(q.parse(std::vector<std::string>{}) == ArgumentParser::Outcome::run);
  CHECK(steps == 1000);
  CHECK(q.parse(std::vector<std::string>{"50"}) == ArgumentParser::Outcome::run);
  CHECK(steps == 50);
  CHECK(lr == 0.01);
  CHECK(q.parse(std::vector<std::string>{"20", "0.5"}) == ArgumentParser::Outcome::run);
  CHECK(lr == 0.5);
  CHECK_THROWS_WITH_AS(q.parse(std::vector<std::string>{"-5"}),
                       "<steps>: expected an integer in [1, 1000000], got '-5'", input_error);
  CHECK_THROWS_WITH_AS(q.parse(std::vector<std::string>{"10", "abc"}),
                       "<learning_rate>: expected a number in [1e-09, 1], got 'abc'", input_error);
  CHECK_THROWS_WITH_AS(q.parse(std::vector<std::string>{"1", "0.1", "2"}), "unexpected argument '2'", input_error);

  std::string out;
  std::vector<std::string> runs;
  ArgumentParser s("summarize_runs", "");
  s.positional("output_dir", "", out).positional("run_dir", "", runs);
  CHECK_THROWS_WITH_AS(s.parse(std::vector<std::string>{"o"}), "missing argument <run_dir>", input_error);
  CHECK(s.parse(std::vector<std::string>{"o", "a", "b"}) == ArgumentParser::Outcome::run);
  CHECK(runs == std::vector<std::string>{"a", "b"});

  std::vector<std::string> loras;
  ArgumentParser e("evaluate", "");
  e.positional("output_dir", "", out).positional("name=lora.safetensors", "", loras).optional();
  CHECK(e.parse(std::vector<std::string>{"o"}) == ArgumentParser::Outcome::run);
  CHECK(loras.empty());
}

TEST_CASE("command line: checks of several values run after the parse") {
  SampleArgs a;
  auto p = a.parser();
  p.check([&] {
    SPO_EXPECT(static_cast<long long>(a.prompts.size()) * a.per_prompt <= 4,
               "--prompt x --per-prompt: at most 4 images, got " << a.prompts.size() * a.per_prompt);
  });
  CHECK(p.parse(with({"--prompt", "a", "--per-prompt", "4"})) == ArgumentParser::Outcome::run);
  SampleArgs b;
  auto q = b.parser();
  q.check([&] { SPO_EXPECT(b.prompts.size() * b.per_prompt <= 4, "at most 4 images"); });
  CHECK_THROWS_WITH_AS(q.parse(with({"--prompt", "a", "--prompt", "b", "--per-prompt", "3"})), "at most 4 images",
                       input_error);
}

TEST_CASE("command line: --help, the usage text and the exit codes of parse_main") {
  SampleArgs a;
  auto p = a.parser();
  CHECK(p.usage() ==
        "usage: sample <model_config.json> --weights FILE --out FILE.png [--prompt TEXT]... [--per-prompt N]\n"
        "              [--seed N] [--steps N] [--eta X] [--guidance X] [--verbose]\n");
  CHECK(p.help() ==
        "usage: sample <model_config.json> --weights FILE --out FILE.png [--prompt TEXT]... [--per-prompt N]\n"
        "              [--seed N] [--steps N] [--eta X] [--guidance X] [--verbose]\n"
        "\n"
        "Writes a PNG grid of samples.\n"
        "\n"
        "arguments:\n"
        "  <model_config.json>  the model's config\n"
        "\n"
        "options:\n"
        "  --weights FILE       the model weights (required)\n"
        "  --out FILE.png       the grid to write (required)\n"
        "  --prompt TEXT        a prompt (repeatable)\n"
        "  --per-prompt N       images per prompt (an integer in [1, 1024]; default 8)\n"
        "  --seed N             the sampling seed (a non-negative integer; default 0)\n"
        "  --steps N            DDIM steps (an integer >= 1)\n"
        "  --eta X              the DDIM eta (a number in [0, 1])\n"
        "  --guidance X         the guidance scale (a number in [0, 100])\n"
        "  --verbose            say more\n"
        "  -h, --help           print this help and exit\n");

  // --help wins over anything else given, even errors; nothing is filled.
  CHECK(p.parse(std::vector<std::string>{"--per-prompt", "abc", "--help"}) == ArgumentParser::Outcome::help);
  CHECK(p.parse(std::vector<std::string>{"-h"}) == ArgumentParser::Outcome::help);
  CHECK(a.per_prompt == 8);

  const char* help_argv[] = {"sample", "--help"};
  std::ostringstream out, err;
  CHECK(p.parse_main(2, help_argv, out, err) == 0);
  CHECK(out.str() == p.help());
  CHECK(err.str().empty());

  const char* bad_argv[] = {"sample", "cfg.json", "--per-prompt", "abc"};
  std::ostringstream out2, err2;
  CHECK(p.parse_main(4, bad_argv, out2, err2) == 2);
  CHECK(out2.str().empty());
  CHECK(err2.str() == "sample: error: --per-prompt: expected an integer in [1, 1024], got 'abc'\n" + p.usage() +
                          "Run 'sample --help' for more.\n");

  const char* good_argv[] = {"sample", "cfg.json", "--weights", "w", "--out", "x.png"};
  std::ostringstream out3, err3;
  CHECK_FALSE(p.parse_main(6, good_argv, out3, err3).has_value());
  CHECK(out3.str().empty());
  CHECK(err3.str().empty());
}

TEST_CASE("command line: long help texts wrap under their column") {
  std::string s;
  ArgumentParser p("p",
                   "A summary that is long enough to need two lines when it is wrapped at one hundred columns, as "
                   "this one is.");
  p.option("--a-rather-long-option-name", "VALUE", "help that starts on the next line", s);
  CHECK(p.help() ==
        "usage: p [--a-rather-long-option-name VALUE]\n"
        "\n"
        "A summary that is long enough to need two lines when it is wrapped at one hundred columns, as this\n"
        "one is.\n"
        "\n"
        "options:\n"
        "  --a-rather-long-option-name VALUE\n"
        "                                help that starts on the next line\n"
        "  -h, --help                    print this help and exit\n");
}

TEST_CASE("command line: a range in a help text is not broken across lines") {
  double g = 1;
  const std::string help(62, 'w');  // "in [0," ends at column 95, "in [0, 100];" would end at 101
  ArgumentParser p("p", "");
  p.option("--guidance", "X", help, g, 0.0, 100.0);
  CHECK(p.help() ==
        "usage: p [--guidance X]\n"
        "\n"
        "options:\n"
        "  --guidance X  " +
            help +
            " (a number in\n"
            "                [0, 100]; default 1)\n"
            "  -h, --help    print this help and exit\n");
}

TEST_CASE("command line: declaration mistakes are internal errors") {
  int n = 0;
  bool f = false;
  std::vector<std::string> rest;
  ArgumentParser p("p", "");
  CHECK_THROWS_AS(p.option("seed", "N", "", n), spo::error);
  CHECK_THROWS_AS(p.option("--help", "N", "", n), spo::error);
  p.option("--n", "N", "", n);
  CHECK_THROWS_AS(p.option("--n", "N", "", n), spo::error);
  CHECK_THROWS_AS(p.option("--m", "N", "", n, 5, 1), spo::error);
  CHECK_THROWS_AS(p.option("--k", "N", "", n, 0, 1LL << 40), spo::error);
  p.flag("--f", "", f);
  CHECK_THROWS_AS(p.required(), spo::error);
  CHECK_THROWS_AS(p.optional(), spo::error);
  p.positional("rest", "", rest);
  CHECK_THROWS_AS(p.positional("after", "", n), spo::error);
}

TEST_CASE("parse_command_line: the training experiments' command line") {
  std::string out, err;
  SUBCASE("defaults and both syntaxes") {
    auto r = run_command_line({"configs/spo.json"}, out, err);
    REQUIRE(r);
    CHECK(r->config == "configs/spo.json");
    CHECK_FALSE(r->resume);
    CHECK_FALSE(r->length.has_value());
    CHECK_FALSE(r->seed.has_value());
    CHECK_FALSE(r->output.has_value());
    CHECK_FALSE(r->allow_length_change);

    r = run_command_line({"configs/spo.json", "--seed=1", "--output=runs/spo_seeds/seed1", "--resume", "--rounds=20"},
                         out, err);
    REQUIRE(r);
    CHECK(r->seed == 1u);
    CHECK(r->output == "runs/spo_seeds/seed1");
    CHECK(r->resume);
    CHECK(r->length == 20);

    r = run_command_line({"--rounds", "4", "configs/spo.json", "--seed", "18446744073709551615"}, out, err);
    REQUIRE(r);
    CHECK(r->length == 4);
    CHECK(r->seed == std::numeric_limits<std::uint64_t>::max());
    CHECK(out.empty());
    CHECK(err.empty());
  }
  SUBCASE("--allow-rounds-change with --resume") {
    auto r = run_command_line({"configs/spo.json", "--resume", "--rounds=30", "--allow-rounds-change"}, out, err);
    REQUIRE(r);
    CHECK(r->allow_length_change);
    CHECK(r->length == 30);
    CHECK((*r).resume);

    r = run_command_line({"configs/spm.json", "--resume", "--allow-steps-change"}, out, err, "steps");
    REQUIRE(r);
    CHECK(r->allow_length_change);

    r = run_command_line({"configs/spo.json", "--allow-rounds-change"}, out, err);
    CHECK_FALSE(r);
    CHECK(r.exit_code == 2);
    CHECK(err.starts_with("spo: error: --allow-rounds-change: applies to --resume only\nusage: spo <config.json> "));

    r = run_command_line({"configs/spo.json", "--resume", "--allow-steps-change"}, out, err);
    CHECK_FALSE(r);
    CHECK(err.starts_with("spo: error: unknown option '--allow-steps-change'\n"));
  }
  SUBCASE("usage errors: exit code 2, the message and the usage on stderr") {
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{}, "missing argument <config.json>"},
        {{"c.json", "--rounds=0"}, "--rounds: expected an integer >= 1, got '0'"},
        {{"c.json", "--rounds=12x"}, "--rounds: expected an integer >= 1, got '12x'"},
        {{"c.json", "--seed=-1"}, "--seed: expected a non-negative integer, got '-1'"},
        {{"c.json", "--seed", "18446744073709551616"},
         "--seed: expected a non-negative integer, got '18446744073709551616'"},
        {{"c.json", "--output="}, "--output: expected a non-empty value, got ''"},
        {{"c.json", "--steps=5"}, "unknown option '--steps'"},
        {{"c.json", "--resume=1"}, "--resume: takes no value, got '1'"},
        {{"c.json", "--seed=1", "--seed=2"}, "--seed: given more than once ('1', then '2')"},
        {{"c.json", "other.json"}, "unexpected argument 'other.json'"},
        {{"c.json", "--output"}, "--output: missing value (--output DIR)"},
        {{"c.json", "--comm=gloo"}, "--comm: \"gloo\" is not one of auto, single, mpi, nccl"},
        {{"c.json", "--comm-timeout=0"}, "--comm-timeout: expected a number in [0.001, 1e+09], got '0'"},
    };
    for (const auto& [args, message] : cases) {
      CAPTURE(message);
      const auto r = run_command_line(args, out, err);
      CHECK_FALSE(r);
      CHECK(r.exit_code == 2);
      CHECK(out.empty());
      CHECK(err == "spo: error: " + message +
                       "\nusage: spo <config.json> [--resume] [--rounds N] [--seed N] [--output DIR] [--comm NAME]\n"
                       "           [--comm-timeout S] [--allow-rounds-change]\n"
                       "Run 'spo --help' for more.\n");
    }
  }
  SUBCASE("--help: exit code 0, the help on stdout") {
    const auto r = run_command_line({"configs/spo.json", "--help"}, out, err, "steps");
    CHECK_FALSE(r);
    CHECK(r.exit_code == 0);
    CHECK(err.empty());
    CHECK(out ==
          "usage: spo <config.json> [--resume] [--steps N] [--seed N] [--output DIR] [--comm NAME]\n"
          "           [--comm-timeout S] [--allow-steps-change]\n"
          "\n"
          "Runs the experiment configured by <config.json>; the options override the config's run length\n"
          "(train.steps), seed and output_dir.\n"
          "\n"
          "arguments:\n"
          "  <config.json>         the experiment's config\n"
          "\n"
          "options:\n"
          "  --resume              continue from <output_dir>/checkpoint.safetensors when it exists\n"
          "  --steps N             the run length: overrides train.steps (an integer >= 1)\n"
          "  --seed N              overrides the config's seed (a non-negative integer)\n"
          "  --output DIR          overrides the config's output_dir\n"
          "  --comm NAME           data parallel: auto (one rank alone; under mpirun/srun MPI ranks on the CPU,\n"
          "                        NCCL on GPUs), single, mpi or nccl (default \"auto\")\n"
          "  --comm-timeout S      seconds a collective may wait for the other ranks before the run aborts (a\n"
          "                        number in [0.001, 1e+09]; default 1800)\n"
          "  --allow-steps-change  with --resume: accept a config whose train.steps differs from the resumed\n"
          "                        run's (every other key must match)\n"
          "  -h, --help            print this help and exit\n");
  }
}
