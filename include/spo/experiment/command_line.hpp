// SPDX-License-Identifier: MIT
/// @brief The strict command-line parser of every experiment binary, and the command line the training experiments
/// share: <config.json> [--resume] [--<length>=N] [--seed=N] [--output=DIR] [--allow-<length>-change].
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/dist/launch.hpp"

namespace spo::experiment {

namespace detail::command_line {

template <class T>
struct element {
  using type = T;
  static constexpr bool optional = false, repeated = false;
};
template <class T>
struct element<std::optional<T>> {
  using type = T;
  static constexpr bool optional = true, repeated = false;
};
template <class T, class A>
struct element<std::vector<T, A>> {
  using type = T;
  static constexpr bool optional = false, repeated = true;
};

template <class T>
concept Number = (std::integral<T> && !std::same_as<T, bool>) || std::floating_point<T>;

/// What an argument can fill: a number, a string, std::optional of one (set only when given) or std::vector of one
/// (every occurrence appended).
template <class T>
concept Target = Number<typename element<T>::type> || std::same_as<typename element<T>::type, std::string>;

/// A Target holding numbers.
template <class T>
concept NumberTarget = Number<typename element<T>::type>;

/// The shortest decimal text that reads back as v.
template <Number T>
std::string format_number(T v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

/// "an integer in [1, 1024]", "a non-negative integer", "a finite number >= 0": what a value in [min, max] is.
template <Number T>
std::string describe_range(T min, T max) {
  constexpr T lowest = std::numeric_limits<T>::lowest(), highest = std::numeric_limits<T>::max();
  const std::string what = std::integral<T> ? "an integer" : "a finite number";
  if (min == lowest && max == highest) return std::unsigned_integral<T> ? "a non-negative integer" : what;
  if (max == highest) return what + " >= " + format_number(min);
  if (min == lowest) return what + " <= " + format_number(max);
  return (std::integral<T> ? "an integer" : "a number") + std::string(" in [") + format_number(min) + ", " +
         format_number(max) + "]";
}

/// The value of `text` when all of it is a number of type T in [min, max]: std::from_chars, so no sign on unsigned
/// types, no leading '+' or space, no trailing characters and no inf or nan.
template <Number T>
std::optional<T> parse_number(std::string_view text, T min, T max) {
  const char* const end = text.data() + text.size();
  if constexpr (std::integral<T>) {
    using Wide = std::conditional_t<std::is_signed_v<T>, long long, unsigned long long>;
    Wide v{};
    const auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc{} || ptr != end) return std::nullopt;
    if (v < static_cast<Wide>(min) || v > static_cast<Wide>(max)) return std::nullopt;
    return static_cast<T>(v);
  } else {
    double v = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), end, v, std::chars_format::general);
    if (text.empty() || ec != std::errc{} || ptr != end || !std::isfinite(v)) return std::nullopt;
    if (v < static_cast<double>(min) || v > static_cast<double>(max)) return std::nullopt;
    return static_cast<T>(v);
  }
}

/// Edit distance of a and b (insertions, deletions, substitutions), for the "did you mean" of an unknown option.
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

/// `text` broken into lines of at most `width` columns at spaces outside brackets (longer words stay whole); every
/// line but the first starts with `indent` spaces, the first continues after `first_column` columns already used.
inline std::string wrap(std::string_view text, std::size_t width, std::size_t indent, std::size_t first_column) {
  std::string out;
  std::size_t column = first_column;
  bool line_empty = true;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '\n') {
      out.append(1, '\n').append(indent, ' ');
      column = indent;
      line_empty = true;
      ++i;
      continue;
    }
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    std::size_t j = i;
    int brackets = 0;  // "[0, 100]" stays on one line
    for (; j < text.size() && (text[j] != ' ' || brackets > 0) && text[j] != '\n'; ++j)
      brackets += text[j] == '[' ? 1 : text[j] == ']' ? -1 : 0;
    const std::string_view word = text.substr(i, j - i);
    if (!line_empty && column + 1 + word.size() > width) {
      out.append(1, '\n').append(indent, ' ');
      column = indent;
      line_empty = true;
    }
    if (!line_empty) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    line_empty = false;
    i = j;
  }
  return out;
}

}  // namespace detail::command_line

/*!
  WHAT THIS REPRESENTS
    A program's command line, declared against the variables the arguments fill, and its strict parser:
      std::string config, weights;
      std::vector<std::string> prompts;
      int per_prompt = 8;
      std::optional<double> eta;
      ArgumentParser p("sample", "Writes a PNG grid of samples.");
      p.positional("model_config.json", "the model's config", config)
          .option("--weights", "FILE", "the model weights", weights).required()
          .option("--prompt", "TEXT", "a prompt", prompts)            // repeatable: a std::vector target
          .option("--per-prompt", "N", "images per prompt", per_prompt, 1, 1024)
          .option("--eta", "X", "the DDIM eta", eta, 0.0, 1.0);     // std::optional: set only when given
      if (const auto exit_code = p.parse_main(argc, argv)) return *exit_code;
    Targets are integers, floating-point numbers and std::string, or std::optional / std::vector of one; flags
    fill a bool. An option takes its value as `--name=value` or `--name value` (a separate value must not start
    with "--"); arguments that do not start with '-' (or a negative number, or anything after "--") are the
    positionals, in declaration order, the last of which may be a std::vector taking the rest.
  REQUIRES
    - option names start with "--" and are unique ("--help" is the parser's); a required positional follows no
      optional or repeated one; required() follows an option with a value, optional() a positional
    - min <= max, both within the target's type
  ENSURES
    - parse() fills the targets of the arguments given and leaves the others (their defaults) alone; it returns
      Outcome::help, touching nothing, when "--help" or "-h" comes before any "--"
    - parse() throws spo::input_error naming the option (or <positional>) and the value for: an unknown option, a
      missing value, a value given to a flag, a non-repeatable option given twice, a number that is not all digits
      of its type (std::from_chars: "12x", "-1" for an unsigned target, "+1", " 1", "1e999", "nan" and "inf" are
      refused), a number outside [min, max], an empty string, a missing required option or positional, an
      unexpected positional, and whatever a check() throws
    - usage() is "usage: <program> <synopsis>" wrapped at 100 columns; help() adds the summary and a line per
      argument with its help, range, default and whether it is required or repeatable
!*/
class ArgumentParser {
 public:
  enum class Outcome { run, help };

  ArgumentParser(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  const std::string& program() const { return program_; }

  /// An option without a value: sets `target` to true when given.
  ArgumentParser& flag(std::string name, std::string help, bool& target) {
    Item& item = add_option(std::move(name), "", std::move(help));
    item.flag = true;
    item.assign = [&target](const std::string&) { target = true; };
    return *this;
  }

  /// An option with a value of the target's type (any value of it; numbers finite).
  template <detail::command_line::Target T>
  ArgumentParser& option(std::string name, std::string metavar, std::string help, T& target) {
    using E = typename detail::command_line::element<T>::type;
    Item& item = add_option(std::move(name), std::move(metavar), std::move(help));
    if constexpr (detail::command_line::Number<E>) {
      bind(item, target, std::numeric_limits<E>::lowest(), std::numeric_limits<E>::max());
    } else {
      bind(item, target, 0, 0);
    }
    return *this;
  }

  /// An option with a number in [min, max].
  template <detail::command_line::NumberTarget T, detail::command_line::Number Lo, detail::command_line::Number Hi>
  ArgumentParser& option(std::string name, std::string metavar, std::string help, T& target, Lo min, Hi max) {
    Item& item = add_option(std::move(name), std::move(metavar), std::move(help));
    bind(item, target, checked_bound<T>(min), checked_bound<T>(max));
    return *this;
  }

  /// The next positional: required unless the target is std::optional or optional() follows; a std::vector target
  /// takes every remaining positional (at least one unless optional()).
  template <detail::command_line::Target T>
  ArgumentParser& positional(std::string name, std::string help, T& target) {
    using E = typename detail::command_line::element<T>::type;
    Item& item = add_positional(std::move(name), std::move(help));
    if constexpr (detail::command_line::Number<E>) {
      bind(item, target, std::numeric_limits<E>::lowest(), std::numeric_limits<E>::max());
    } else {
      bind(item, target, 0, 0);
    }
    return *this;
  }

  /// The next positional, a number in [min, max].
  template <detail::command_line::NumberTarget T, detail::command_line::Number Lo, detail::command_line::Number Hi>
  ArgumentParser& positional(std::string name, std::string help, T& target, Lo min, Hi max) {
    Item& item = add_positional(std::move(name), std::move(help));
    bind(item, target, checked_bound<T>(min), checked_bound<T>(max));
    return *this;
  }

  /// The option declared last must be given.
  ArgumentParser& required() {
    SPO_CHECK(!items_.empty() && !items_.back().positional && !items_.back().flag,
              "required() follows the declaration of an option with a value");
    items_.back().required = true;
    return *this;
  }

  /// The positional declared last may be left out (its target keeps its default).
  ArgumentParser& optional() {
    SPO_CHECK(!items_.empty() && items_.back().positional, "optional() follows the declaration of a positional");
    items_.back().required = false;
    return *this;
  }

  /// A check of the parsed values together (e.g. a bound on a product of two), run after every argument is read;
  /// it throws spo::input_error (SPO_EXPECT) naming the options.
  ArgumentParser& check(std::function<void()> f) {
    checks_.push_back(std::move(f));
    return *this;
  }

  /// Parses the arguments after the program name.
  Outcome parse(std::span<const std::string> args) {
    bool optional_seen = false;
    for (const auto& item : items_) {
      if (!item.positional) continue;
      SPO_CHECK(!(optional_seen && item.required), "required positional <" << item.name << "> follows an optional one");
      optional_seen = optional_seen || !item.required;
    }
    for (const auto& a : args) {
      if (a == "--") break;
      if (a == "--help" || a == "-h") return Outcome::help;
    }
    for (auto& item : items_) item.count = 0;
    std::size_t next_positional = 0;
    bool options_ended = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (!options_ended && a == "--") {
        options_ended = true;
      } else if (!options_ended && a.starts_with("--")) {
        const auto eq = a.find('=');
        const std::string name = a.substr(0, eq);
        Item& item = find_option(name);
        if (item.flag) {
          SPO_EXPECT(eq == std::string::npos, name << ": takes no value, got '" << a.substr(eq + 1) << "'");
          SPO_EXPECT(item.count == 0, name << ": given more than once");
          item.assign({});
        } else {
          std::string value;
          if (eq != std::string::npos) {
            value = a.substr(eq + 1);
          } else {
            SPO_EXPECT(i + 1 < args.size() && !args[i + 1].starts_with("--"),
                       name << ": missing value (" << name << " " << item.metavar << ")");
            value = args[++i];
          }
          SPO_EXPECT(item.count == 0 || item.repeated,
                     name << ": given more than once ('" << item.last << "', then '" << value << "')");
          item.assign(value);
          item.last = value;
        }
        ++item.count;
      } else if (!options_ended && a.size() > 1 && a[0] == '-' &&
                 !(std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.')) {
        throw input_error("unknown option '" + a + "'" + suggestion(a));
      } else {
        while (next_positional < items_.size() && !items_[next_positional].positional) ++next_positional;
        SPO_EXPECT(next_positional < items_.size(), "unexpected argument '" << a << "'");
        Item& item = items_[next_positional];
        item.assign(a);
        item.last = a;
        ++item.count;
        if (!item.repeated) ++next_positional;
      }
    }
    for (const auto& item : items_) {
      if (!item.required || item.count > 0) continue;
      if (item.positional) throw input_error("missing argument <" + item.name + ">");
      throw input_error("missing required option " + item.name + " " + item.metavar);
    }
    for (const auto& f : checks_) f();
    return Outcome::run;
  }

  Outcome parse(int argc, const char* const* argv) {
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    return parse(args);
  }

  /// The parse of main(): nullopt to go on; otherwise the exit code main returns: 0 after printing help() to `out`
  /// for --help, 2 after printing "<program>: error: <message>", usage() and a pointer to --help to `err`.
  std::optional<int> parse_main(int argc, const char* const* argv, std::ostream& out = std::cout,
                                std::ostream& err = std::cerr) {
    try {
      if (parse(argc, argv) == Outcome::run) return std::nullopt;
      out << help();
      return 0;
    } catch (const input_error& e) {
      err << program_ << ": error: " << e.what() << "\n" << usage() << "Run '" << program_ << " --help' for more.\n";
      return 2;
    }
  }

  /// "usage: <program> <positionals> <options>" (optional ones in brackets, repeatable ones with "..."), wrapped.
  std::string usage() const {
    namespace cl = detail::command_line;
    std::string synopsis;
    auto add = [&](const std::string& part) { synopsis += (synopsis.empty() ? "" : " ") + part; };
    for (const auto& item : items_) {
      if (!item.positional) continue;
      const std::string p = "<" + item.name + ">" + (item.repeated ? "..." : "");
      add(item.required ? p : "[" + p + "]");
    }
    for (const auto& item : items_) {
      if (item.positional) continue;
      const std::string o = item.flag ? item.name : item.name + " " + item.metavar;
      add(item.required ? o : "[" + o + "]" + (item.repeated ? "..." : ""));
    }
    const std::string head = "usage: " + program_ + " ";
    return head + cl::wrap(synopsis, width, head.size(), head.size()) + "\n";
  }

  /// usage(), the summary, and one line per positional and option with its help and notes.
  std::string help() const {
    namespace cl = detail::command_line;
    std::string out = usage();
    if (!summary_.empty()) out.append("\n").append(cl::wrap(summary_, width, 0, 0)).append("\n");
    std::vector<std::pair<std::string, std::string>> positionals, options;
    for (const auto& item : items_) {
      std::vector<std::string> notes;
      if (!item.positional && item.required) notes.emplace_back("required");
      if (item.positional && !item.required) notes.emplace_back("optional");
      if (item.repeated) notes.emplace_back("repeatable");
      if (!item.range.empty()) notes.push_back(item.range);
      if (!item.default_value.empty()) notes.push_back("default " + item.default_value);
      std::string text = item.help;
      for (std::size_t k = 0; k < notes.size(); ++k) text += (k == 0 ? " (" : "; ") + notes[k];
      if (!notes.empty()) text += ")";
      if (item.positional)
        positionals.emplace_back("<" + item.name + ">", text);
      else
        options.emplace_back(item.flag ? item.name : item.name + " " + item.metavar, text);
    }
    options.emplace_back("-h, --help", "print this help and exit");
    std::size_t column = 0;
    for (const auto* list : {&positionals, &options})
      for (const auto& [left, text] : *list) column = std::max(column, left.size());
    column = std::min<std::size_t>(column, 28) + 4;
    auto table = [&](const char* title, const std::vector<std::pair<std::string, std::string>>& rows) {
      if (rows.empty()) return;
      out.append("\n").append(title).append(":\n");
      for (const auto& [left, text] : rows) {
        std::string line = "  " + left;
        if (line.size() + 2 > column)
          line.append(1, '\n').append(column, ' ');
        else
          line.append(column - line.size(), ' ');
        out += line + cl::wrap(text, width, column, column) + "\n";
      }
    };
    table("arguments", positionals);
    table("options", options);
    return out;
  }

 private:
  static constexpr std::size_t width = 100;

  struct Item {
    std::string name;  ///< "--seed", or a positional's name without the brackets
    std::string metavar;
    std::string help;
    std::string range;          ///< a number's range in words: "an integer in [1, 1024]"
    std::string default_value;  ///< the target's value at declaration, for the help of a plain number
    bool positional = false, flag = false, repeated = false, required = false;
    std::function<void(const std::string&)> assign;  ///< converts and stores one value; throws input_error
    int count = 0;
    std::string last;  ///< the value given last
  };

  Item& add_option(std::string name, std::string metavar, std::string help) {
    SPO_CHECK(name.size() > 2 && name.starts_with("--") && name.find('=') == std::string::npos && name != "--help",
              "option name \"" << name << "\"");
    for (const auto& item : items_)
      SPO_CHECK(item.positional || item.name != name, "option " << name << " declared twice");
    Item item;
    item.name = std::move(name);
    item.metavar = std::move(metavar);
    item.help = std::move(help);
    items_.push_back(std::move(item));
    return items_.back();
  }

  Item& add_positional(std::string name, std::string help) {
    for (const auto& item : items_)
      SPO_CHECK(!item.positional || !item.repeated, "positional <" << name << "> follows a repeated positional");
    Item item;
    item.name = std::move(name);
    item.help = std::move(help);
    item.positional = true;
    items_.push_back(std::move(item));
    return items_.back();
  }

  template <class T, class B>
  static typename detail::command_line::element<T>::type checked_bound(B bound) {
    using E = typename detail::command_line::element<T>::type;
    if constexpr (std::integral<E> && std::integral<B>) {
      SPO_CHECK(std::in_range<E>(bound), "bound " << bound << " outside the option's type");
    } else {
      static_assert(std::floating_point<E>, "an integer option needs integer bounds");
      SPO_CHECK(std::isfinite(static_cast<double>(bound)), "bound " << bound << " is not finite");
    }
    return static_cast<E>(bound);
  }

  template <class T, class E>
  void bind(Item& item, T& target, E min, E max) {
    namespace cl = detail::command_line;
    using V = typename cl::element<T>::type;
    item.repeated = cl::element<T>::repeated;
    if (item.positional) item.required = !cl::element<T>::optional;
    std::string range;
    if constexpr (cl::Number<V>) {
      SPO_CHECK(min <= max, "empty range of " << item.name);
      range = cl::describe_range<V>(min, max);
      if constexpr (!cl::element<T>::optional && !cl::element<T>::repeated)
        item.default_value = cl::format_number(target);
    } else if constexpr (!cl::element<T>::optional && !cl::element<T>::repeated) {
      if (!target.empty()) item.default_value = "\"" + target + "\"";
    }
    item.range = range;
    const std::string shown = item.positional ? "<" + item.name + ">" : item.name;
    item.assign = [&target, min, max, range, shown](const std::string& text) {
      V value{};
      if constexpr (cl::Number<V>) {
        const auto v = cl::parse_number<V>(text, static_cast<V>(min), static_cast<V>(max));
        SPO_EXPECT(v.has_value(), shown << ": expected " << range << ", got '" << text << "'");
        value = *v;
      } else {
        SPO_EXPECT(!text.empty(), shown << ": expected a non-empty value, got ''");
        value = text;
      }
      if constexpr (cl::element<T>::repeated) {
        target.push_back(std::move(value));
      } else {
        target = std::move(value);
      }
    };
  }

  Item& find_option(const std::string& name) {
    for (auto& item : items_)
      if (!item.positional && item.name == name) return item;
    throw input_error("unknown option '" + name + "'" + suggestion(name));
  }

  /// " (did you mean --x?)" for the declared option nearest to `name` when it is close, else "".
  std::string suggestion(const std::string& name) const {
    std::string best;
    std::size_t best_distance = 3;
    for (const auto& item : items_) {
      if (item.positional) continue;
      const std::size_t d = detail::command_line::edit_distance(name, item.name);
      if (d < best_distance) best_distance = d, best = item.name;
    }
    return best.empty() ? "" : " (did you mean " + best + "?)";
  }

  std::string program_, summary_;
  std::vector<Item> items_;
  std::vector<std::function<void()>> checks_;
};

/// A `name=path` argument, e.g. evaluate's `seed1=runs/spo/seed1/lora.safetensors`: the name labels what the file
/// produces (a results key, samples_<name>.png).
struct NamedFile {
  std::string name;
  std::filesystem::path path;
};

/// Parses `name=path`; throws spo::input_error naming the argument unless the name is letters, digits, '_', '-' and
/// '.' (at least one) and the path names an existing regular file.
inline NamedFile parse_named_file(const std::string& argument) {
  const auto eq = argument.find('=');
  SPO_EXPECT(eq != std::string::npos, "'" << argument << "': expected name=file");
  NamedFile f{argument.substr(0, eq), argument.substr(eq + 1)};
  SPO_EXPECT(!f.name.empty(), "'" << argument << "': the name before '=' is empty");
  SPO_EXPECT(
      std::ranges::all_of(
          f.name,
          [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.'; }),
      "'" << argument << "': the name '" << f.name << "' may hold letters, digits, '_', '-' and '.' only");
  SPO_EXPECT(!f.path.empty(), "'" << argument << "': the file after '=' is empty");
  std::error_code ec;
  SPO_EXPECT(std::filesystem::is_regular_file(f.path, ec), "'" << argument << "': file not found: " << f.path.string());
  return f;
}

/// The command line of the training experiments (SPO, its ablations, the baselines, the preference models and the
/// base model).
struct CommandLine {
  std::string config;
  bool resume = false;
  std::optional<std::int64_t> length;  ///< --<length_flag>=N: overrides the run length (steps, rounds) of the config
  std::optional<std::uint64_t> seed;   ///< --seed=N: overrides the config's seed (runs over several seeds)
  std::optional<std::string> output;   ///< --output=DIR: overrides the config's output_dir
  bool allow_length_change = false;    ///< --allow-<length_flag>-change: with --resume, the run length may differ
                                       ///< from the resumed run's (no other key may)
  std::string comm = "auto";           ///< --comm: the data-parallel transport (auto: by how the program was launched)
  double comm_timeout = dist::default_timeout_s;  ///< --comm-timeout S: how long a collective may wait
};

/// What parse_command_line returns: the command line, or (printed already) the exit code of a program that stops.
/// Reads like std::optional<CommandLine>.
struct ParsedCommandLine {
  std::optional<CommandLine> line;
  int exit_code = 0;  ///< 0 after --help, 2 after a usage error; meaningful when `line` is empty

  explicit operator bool() const { return line.has_value(); }
  const CommandLine& operator*() const { return *line; }
  const CommandLine* operator->() const { return &*line; }
};

/// The parser of `<program> <config.json> [--resume] [--<length_flag> N] [--seed N] [--output DIR] [--comm NAME]
/// [--comm-timeout S] [--allow-<length_flag>-change]` filling `c`.
inline ArgumentParser command_line_parser(const std::string& program, const std::string& length_flag, CommandLine& c) {
  ArgumentParser p(
      program, "Runs the experiment configured by <config.json>; the options override the config's run length (train." +
                   length_flag + "), seed and output_dir.");
  p.positional("config.json", "the experiment's config", c.config)
      .flag("--resume", "continue from <output_dir>/checkpoint.safetensors when it exists", c.resume)
      .option("--" + length_flag, "N", "the run length: overrides train." + length_flag, c.length, 1,
              std::numeric_limits<std::int64_t>::max())
      .option("--seed", "N", "overrides the config's seed", c.seed)
      .option("--output", "DIR", "overrides the config's output_dir", c.output)
      .option("--comm", "NAME",
              "data parallel: auto (one rank alone; under mpirun/srun MPI ranks on the CPU, NCCL on GPUs), single, "
              "mpi or nccl",
              c.comm)
      .option("--comm-timeout", "S", "seconds a collective may wait for the other ranks before the run aborts",
              c.comm_timeout, 1e-3, 1e9)
      .flag("--allow-" + length_flag + "-change",
            "with --resume: accept a config whose train." + length_flag +
                " differs from the resumed run's (every other key must match)",
            c.allow_length_change)
      .check([&c, length_flag] {
        SPO_EXPECT(!c.allow_length_change || c.resume,
                   "--allow-" << length_flag << "-change: applies to --resume only");
        dist::parse_backend(c.comm);
      });
  return p;
}

/// Parses the command line of a training experiment (see command_line_parser); prints the help (exit code 0) or a
/// usage error with the usage (exit code 2) and returns no CommandLine for them.
inline ParsedCommandLine parse_command_line(int argc, const char* const* argv, const std::string& length_flag,
                                            std::ostream& out = std::cout, std::ostream& err = std::cerr) {
  const std::string program =
      argc > 0 && argv[0] != nullptr ? std::filesystem::path(argv[0]).filename().string() : std::string("experiment");
  CommandLine c;
  auto parser = command_line_parser(program, length_flag, c);
  if (const auto code = parser.parse_main(argc, argv, out, err)) return {std::nullopt, *code};
  return {std::move(c), 0};
}

/// The communicator of a training run: the transport --comm names (auto: by the launcher's environment), with the
/// --comm-timeout; a model on a GPU (on_gpu) makes auto choose NCCL for several ranks.
inline dist::AnyCommunicator make_run_communicator(const CommandLine& c, bool on_gpu) {
  return dist::make_communicator(dist::parse_backend(c.comm), dist::detect_launch(), on_gpu, c.comm_timeout);
}

/*!
  ENSURES
    - returns body(comm), where body sets comm (make_run_communicator) once it knows the run's device
    - an exception escaping body: "<program>: error: <what>" on stderr and exit code 1 for one rank; for several
      ranks, the message and an abort that ends every rank of the run (MPI_Abort / ncclCommAbort), never a hang
!*/
template <class Body>
int run_guarded(const char* program, Body&& body) {
  dist::AnyCommunicator comm;
  try {
    return body(comm);
  } catch (const std::exception& e) {
    if (comm.size() > 1) comm.abort(std::string(program) + ": error: " + e.what());
    std::cerr << program << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace spo::experiment
