// SPDX-License-Identifier: MIT
/// @brief CLIP byte-level BPE tokenizer (Stable Diffusion 1.x / SDXL `tokenizer/` folders), with the ids of
/// transformers' CLIPTokenizerFast.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "spo/core/error.hpp"
#include "spo/io/atomic_file.hpp"
#include "spo/io/json.hpp"

#define SPO_TEXT_DETAIL_UNICODE_TABLES_ALLOWED
#include "spo/text/detail/unicode_tables.hpp"
#undef SPO_TEXT_DETAIL_UNICODE_TABLES_ALLOWED

namespace spo::text {

namespace detail::clip {

template <class Row, std::size_t N>
const Row* find_range(const Row (&rows)[N], char32_t c) {
  const Row* it = std::upper_bound(rows, rows + N, c, [](char32_t v, const Row& r) { return v < r.first; });
  if (it == rows) return nullptr;
  --it;
  return c <= it->last ? it : nullptr;
}

inline bool is_letter(char32_t c) { return find_range(unicode::letters, c) != nullptr; }
inline bool is_number(char32_t c) { return find_range(unicode::numbers, c) != nullptr; }
inline bool is_white_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return find_range(unicode::white_space, c) != nullptr;
}

/// Appends the per-character lower case of c (U+0130 becomes two code points).
inline void append_lower(char32_t c, std::u32string& out) {
  if (c < 0x80) {
    out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return;
  }
  if (c == 0x130) {
    out.append({U'i', U'\u0307'});
    return;
  }
  const unicode::LowerRun* r = find_range(unicode::lower_runs, c);
  if (r != nullptr && (c - r->first) % static_cast<char32_t>(r->stride) == 0)
    out.push_back(static_cast<char32_t>(static_cast<std::int64_t>(c) + r->delta));
  else
    out.push_back(c);
}

inline int combining_class(char32_t c) {
  if (c < 0x300) return 0;
  const unicode::CombiningClassRange* r = find_range(unicode::combining_classes, c);
  return r != nullptr ? r->ccc : 0;
}

// Hangul syllables decompose and compose algorithmically (Unicode ch. 3.12).
inline constexpr char32_t hangul_s = 0xAC00, hangul_l = 0x1100, hangul_v = 0x1161, hangul_t = 0x11A7;
inline constexpr char32_t hangul_l_count = 19, hangul_v_count = 21, hangul_t_count = 28;
inline constexpr char32_t hangul_n_count = hangul_v_count * hangul_t_count, hangul_s_count = 11172;

inline char32_t packed_code(std::uint64_t p) { return static_cast<char32_t>(p >> 43); }
inline char32_t packed_first(std::uint64_t p) { return static_cast<char32_t>((p >> 22) & 0x1FFFFF); }
inline char32_t packed_second(std::uint64_t p) { return static_cast<char32_t>((p >> 1) & 0x1FFFFF); }

inline void decompose(char32_t c, std::u32string& out) {
  if (c >= hangul_s && c < hangul_s + hangul_s_count) {
    const char32_t s = c - hangul_s;
    out.push_back(hangul_l + s / hangul_n_count);
    out.push_back(hangul_v + (s % hangul_n_count) / hangul_t_count);
    if (s % hangul_t_count != 0) out.push_back(hangul_t + s % hangul_t_count);
    return;
  }
  const auto& rows = unicode::decompositions;
  const std::uint64_t* it = std::lower_bound(std::begin(rows), std::end(rows), c,
                                             [](std::uint64_t p, char32_t v) { return packed_code(p) < v; });
  if (it == std::end(rows) || packed_code(*it) != c) {
    out.push_back(c);
    return;
  }
  decompose(packed_first(*it), out);
  if (packed_second(*it) != 0) decompose(packed_second(*it), out);
}

/// The primary composite of (a, b), or 0.
inline char32_t compose(char32_t a, char32_t b) {
  if (a >= hangul_l && a < hangul_l + hangul_l_count && b >= hangul_v && b < hangul_v + hangul_v_count)
    return hangul_s + ((a - hangul_l) * hangul_v_count + (b - hangul_v)) * hangul_t_count;
  if (a >= hangul_s && a < hangul_s + hangul_s_count && (a - hangul_s) % hangul_t_count == 0 && b > hangul_t &&
      b < hangul_t + hangul_t_count)
    return a + (b - hangul_t);
  static const std::unordered_map<std::uint64_t, char32_t> pairs = [] {
    std::unordered_map<std::uint64_t, char32_t> m;
    for (std::uint64_t p : unicode::decompositions)
      if ((p & 1u) != 0)
        m.emplace(static_cast<std::uint64_t>(packed_first(p)) << 21 | packed_second(p), packed_code(p));
    return m;
  }();
  const auto it = pairs.find(static_cast<std::uint64_t>(a) << 21 | b);
  return it == pairs.end() ? 0 : it->second;
}

/// Unicode Normalization Form C (UAX #15): canonical decomposition, canonical ordering, canonical composition.
inline std::u32string nfc(const std::u32string& text) {
  if (std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0x80; })) return text;
  std::u32string d;
  for (char32_t c : text) decompose(c, d);
  for (std::size_t i = 1; i < d.size(); ++i) {  // stable insertion sort of each run of non-starters by class
    const int cc = combining_class(d[i]);
    if (cc == 0) continue;
    for (std::size_t j = i; j > 0 && combining_class(d[j - 1]) > cc; --j) std::swap(d[j - 1], d[j]);
  }
  std::u32string out;
  std::size_t starter = std::u32string::npos;
  int last_cc = -1;  // class of the last character kept after the starter; -1: the starter is the last one kept
  for (char32_t c : d) {
    const int cc = combining_class(c);
    if (starter != std::u32string::npos && (last_cc == -1 || (last_cc != 0 && last_cc < cc))) {
      if (const char32_t composite = compose(out[starter], c); composite != 0) {
        out[starter] = composite;
        continue;
      }
    }
    if (cc == 0) {
      starter = out.size();
      last_cc = -1;
    } else {
      last_cc = cc;
    }
    out.push_back(c);
  }
  return out;
}

/// Decodes UTF-8; invalid input throws spo::input_error naming `what` and the byte offset.
inline std::u32string decode_utf8(std::string_view s, std::string_view what) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int n = 0;
    char32_t c = 0;
    if (b0 < 0x80) {
      c = b0;
    } else if (b0 >= 0xC2 && b0 <= 0xDF) {
      n = 1, c = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      n = 2, c = b0 & 0x0Fu;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      n = 3, c = b0 & 0x07u;
    } else {
      SPO_EXPECT(false, what << ": invalid UTF-8 at byte " << i);
    }
    SPO_EXPECT(i + static_cast<std::size_t>(n) < s.size(), what << ": truncated UTF-8 sequence at byte " << i);
    for (int k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      SPO_EXPECT((b & 0xC0u) == 0x80u, what << ": invalid UTF-8 at byte " << i);
      c = (c << 6) | (b & 0x3Fu);
    }
    const bool overlong = (n == 2 && c < 0x800) || (n == 3 && c < 0x10000);
    SPO_EXPECT(!overlong && c <= 0x10FFFF && (c < 0xD800 || c > 0xDFFF), what << ": invalid UTF-8 at byte " << i);
    out.push_back(c);
    i += static_cast<std::size_t>(n) + 1;
  }
  return out;
}

inline void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

inline std::string encode_utf8(std::u32string_view s) {
  std::string out;
  for (char32_t c : s) append_utf8(c, out);
  return out;
}

/// GPT-2's byte -> printable code point map (`bytes_to_unicode`): the printable bytes ! .. ~, ¡ .. ¬, ® .. ÿ map to
/// themselves; the other 68 bytes, in increasing order, to U+0100, U+0101, ...
inline std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> m{};
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    m[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
  }
  return m;
}

/// A special token of the tokenizer folder: its text, id and whether it is matched after normalisation.
struct SpecialToken {
  std::string content;
  std::int32_t id = 0;
  bool normalized = true;
};

}  // namespace detail::clip

/*!
  WHAT THIS REPRESENTS
    The CLIP tokenizer of Stable Diffusion 1.x and SDXL (both `tokenizer/` and `tokenizer_2/`) as transformers'
    CLIPTokenizerFast (the `tokenizers` library) computes it. For a prompt:
      1. special tokens are cut out: first those with normalized = false (SDXL tokenizer_2's pad "!") on the raw text,
         then, on each normalised remainder, those with normalized = true (<|startoftext|>, <|endoftext|>); the
         leftmost, then longest, occurrence wins;
      2. normalisation of each remainder: NFC, every run of White_Space (`\s`) becomes " ", per-character Unicode
         lower case (Σ is always σ; İ becomes i + U+0307);
      3. the split `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` (white space is dropped; each digit is
         its own word; an apostrophe inside a punctuation run stays in it);
      4. each word's UTF-8 bytes mapped by bytes_to_unicode, `</w>` appended to the last symbol, then BPE: the pair
         of adjacent symbols with the lowest merge rank (leftmost on ties) is merged until no pair has a rank.
    encode() adds <|startoftext|> and <|endoftext|>, keeps at most model_max_length - 2 tokens (EOS stays last) and
    pads to model_max_length with the pad token, as diffusers calls it
    (`padding="max_length", max_length=model_max_length, truncation=True`).
    Unicode data (letters, numbers, White_Space, lower case, NFC) is Unicode detail::unicode::version, generated from
    Python's unicodedata; `tokenizers` uses newer data, so code points unassigned in that version may tokenize
    differently (tests/data/clip_tokenizer/golden.json lists them under unicode_disagreements).

    The slow CLIPTokenizer (what diffusers pipelines load by model_index.json) cleans text differently: with ftfy
    installed it runs ftfy.fix_text + html unescape; without, BasicTokenizer, which deletes control and format
    characters (U+200B, U+200D in emoji sequences, U+00AD, U+001C), puts each CJK ideograph into its own word,
    lower-cases with Python's context-sensitive final sigma (ς) and treats a different set as white space. On plain
    text (ASCII letters, digits, punctuation, white space, Latin accents and combining marks, contractions, the
    special token strings) slow and fast give the same ids; golden.json records the slow ids where they differ.

  REQUIRES (load)
    - dir holds vocab.json (token -> id) and merges.txt (first line, the "#version" header, skipped; then one
      "left right" merge per line, at most 48,894 read as transformers does); every byte symbol and its `</w>`
      variant and every merge's parts and result are in the vocabulary;
    - optional special_tokens_map.json (overrides) and tokenizer_config.json: bos/eos/unk/pad tokens as strings or
      AddedToken objects, model_max_length. Defaults: <|startoftext|>, <|endoftext|>, <|endoftext|>, <|endoftext|>,
      77 (transformers would not pad or truncate without model_max_length; SD folders always set 77). Special
      tokens must be in the vocabulary; lstrip/rstrip/single_word, other special tokens (sep, cls, mask, additional)
      and extra added tokens are not implemented and are errors naming the file and field.
  ENSURES
    - encode(p).size() == model_max_length(); tokenize(p) is the ids without specials, truncation or padding;
    - prompts must be UTF-8; invalid UTF-8 is an error naming the byte offset;
    - thread-safe: a mutex guards the cache of the BPE of repeated words (shared by copies).
!*/
class ClipTokenizer {
 public:
  /// The most merges transformers reads from merges.txt (49152 - 256 - 2).
  static constexpr std::size_t max_merges = 48894;

  static ClipTokenizer load(const std::filesystem::path& dir) {
    const std::filesystem::path vocab_path = dir / "vocab.json";
    const std::filesystem::path merges_path = dir / "merges.txt";
    SPO_EXPECT(std::filesystem::is_regular_file(vocab_path), vocab_path.string()
                                                                 << ": CLIP tokenizer vocabulary not found");
    SPO_EXPECT(std::filesystem::is_regular_file(merges_path), merges_path.string()
                                                                  << ": CLIP tokenizer merges not found");
    ClipTokenizer t;
    t.read_vocab(io::read_file_text(vocab_path), vocab_path.string());
    t.read_merges(io::read_file_text(merges_path), merges_path.string());
    t.read_special_tokens(dir);
    return t;
  }

  int model_max_length() const { return model_max_length_; }
  std::int64_t vocab_size() const { return static_cast<std::int64_t>(vocab_.size()); }
  std::int32_t bos_id() const { return bos_id_; }
  std::int32_t eos_id() const { return eos_id_; }
  std::int32_t pad_id() const { return pad_id_; }
  std::size_t num_merges() const { return merges_.size(); }

  /// The id of a vocabulary entry (a byte-level symbol string); unknown ones are an error naming them.
  std::int32_t token_id(std::string_view token) const {
    const auto it = vocab_.find(std::string(token));
    SPO_EXPECT(it != vocab_.end(), "CLIP tokenizer: '" << token << "' is not in the vocabulary");
    return it->second;
  }

  /// The text after step 2 (NFC, white space, lower case) as UTF-8.
  static std::string normalize(std::string_view text) {
    return detail::clip::encode_utf8(normalize(detail::clip::decode_utf8(text, "CLIP tokenizer: text")));
  }

  /// Ids of `prompt` without <|startoftext|>, <|endoftext|>, truncation or padding.
  std::vector<std::int32_t> tokenize(std::string_view prompt) const {
    const std::u32string text = detail::clip::decode_utf8(prompt, "CLIP tokenizer: prompt");
    std::vector<std::int32_t> ids;
    split_specials(
        text, false,
        [&](std::u32string_view raw) {
          const std::u32string normalized = normalize(std::u32string(raw));
          split_specials(
              normalized, true, [&](std::u32string_view piece) { append_words(piece, ids); }, ids);
        },
        ids);
    return ids;
  }

  /// model_max_length() ids: <|startoftext|>, at most model_max_length() - 2 tokens, <|endoftext|>, padding.
  std::vector<std::int32_t> encode(std::string_view prompt) const {
    std::vector<std::int32_t> tokens = tokenize(prompt);
    const auto keep = std::min(tokens.size(), static_cast<std::size_t>(model_max_length_ - 2));
    std::vector<std::int32_t> ids(static_cast<std::size_t>(model_max_length_), pad_id_);
    ids[0] = bos_id_;
    std::copy_n(tokens.begin(), keep, ids.begin() + 1);
    ids[keep + 1] = eos_id_;
    return ids;
  }

 private:
  struct Cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<std::int32_t>> words;
  };
  static constexpr std::size_t cache_capacity = 10000;

  static std::u32string normalize(const std::u32string& text) {
    const std::u32string composed = detail::clip::nfc(text);
    std::u32string out;
    out.reserve(composed.size());
    for (std::size_t i = 0; i < composed.size();) {
      if (detail::clip::is_white_space(composed[i])) {
        out.push_back(U' ');
        while (i < composed.size() && detail::clip::is_white_space(composed[i])) ++i;
      } else {
        detail::clip::append_lower(composed[i++], out);
      }
    }
    return out;
  }

  /// Calls on_text for the text between special tokens (with the given normalized flag) and appends their ids.
  template <class OnText>
  void split_specials(std::u32string_view text, bool normalized, OnText&& on_text,
                      std::vector<std::int32_t>& ids) const {
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size();) {
      const Pattern* best = nullptr;
      for (const Pattern& p : patterns_)
        if (p.normalized == normalized && text.substr(i, p.text.size()) == p.text &&
            (best == nullptr || p.text.size() > best->text.size()))
          best = &p;
      if (best == nullptr) {
        ++i;
        continue;
      }
      if (i > start) on_text(text.substr(start, i - start));
      ids.push_back(best->id);
      i += best->text.size();
      start = i;
    }
    if (start < text.size()) on_text(text.substr(start));
  }

  /// Step 3 and 4 on normalised text.
  void append_words(std::u32string_view text, std::vector<std::int32_t>& ids) const {
    using namespace detail::clip;
    const auto other = [](char32_t c) { return !is_white_space(c) && !is_letter(c) && !is_number(c); };
    for (std::size_t i = 0; i < text.size();) {
      std::size_t n = 0;
      const char32_t c = text[i];
      if (c == U'\'' && i + 1 < text.size()) {
        const std::u32string_view rest = text.substr(i + 1, 2);
        if (rest[0] == U's' || rest[0] == U't' || rest[0] == U'm' || rest[0] == U'd')
          n = 2;
        else if (rest == U"re" || rest == U"ve" || rest == U"ll")
          n = 3;
      }
      if (n == 0) {
        if (is_white_space(c)) {
          ++i;
          continue;
        }
        n = 1;
        if (is_letter(c))
          while (i + n < text.size() && is_letter(text[i + n])) ++n;
        else if (!is_number(c))
          while (i + n < text.size() && other(text[i + n])) ++n;
      }
      append_bpe(encode_utf8(text.substr(i, n)), ids);
      i += n;
    }
  }

  void append_bpe(const std::string& word, std::vector<std::int32_t>& ids) const {
    {
      std::lock_guard<std::mutex> lock(cache_->mutex);
      const auto it = cache_->words.find(word);
      if (it != cache_->words.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<std::int32_t> symbols(word.size());
    for (std::size_t k = 0; k < word.size(); ++k) {
      const auto b = static_cast<unsigned char>(word[k]);
      symbols[k] = k + 1 == word.size() ? byte_end_ids_[b] : byte_ids_[b];
    }
    while (symbols.size() > 1) {
      std::size_t best = symbols.size();
      Merge best_merge{};
      for (std::size_t k = 0; k + 1 < symbols.size(); ++k) {
        const auto it = merges_.find(pair_key(symbols[k], symbols[k + 1]));
        if (it != merges_.end() && (best == symbols.size() || it->second.rank < best_merge.rank)) {
          best = k;
          best_merge = it->second;
        }
      }
      if (best == symbols.size()) break;
      symbols[best] = best_merge.id;
      symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
    ids.insert(ids.end(), symbols.begin(), symbols.end());
    std::lock_guard<std::mutex> lock(cache_->mutex);
    if (cache_->words.size() >= cache_capacity) cache_->words.clear();
    cache_->words.emplace(word, std::move(symbols));
  }

  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32 | static_cast<std::uint32_t>(b);
  }

  void read_vocab(const std::string& text, const std::string& source) {
    const io::json j = io::parse_json(text, source);
    SPO_EXPECT(j.is_object(), source << ": expected an object of token -> id");
    vocab_.reserve(j.size());
    for (const auto& [token, id] : j.items()) {
      SPO_EXPECT(id.is_number_integer() && id.get<std::int64_t>() >= 0 && id.get<std::int64_t>() < (1 << 30),
                 source << ": \"" << token << "\": expected a non-negative integer id, got " << id.dump());
      vocab_.emplace(token, id.get<std::int32_t>());
    }
    const std::array<char32_t, 256> symbols = detail::clip::bytes_to_unicode();
    for (std::size_t b = 0; b < 256; ++b) {
      std::string s;
      detail::clip::append_utf8(symbols[b], s);
      const auto plain = vocab_.find(s);
      const auto end = vocab_.find(s + "</w>");
      SPO_EXPECT(plain != vocab_.end() && end != vocab_.end(),
                 source << ": byte symbol '" << s << "' or '" << s << "</w>' (byte " << b << ") is missing");
      byte_ids_[b] = plain->second;
      byte_end_ids_[b] = end->second;
    }
  }

  void read_merges(const std::string& text, const std::string& source) {
    std::size_t line_no = 0;
    std::size_t pos = 0;
    std::unordered_map<std::uint64_t, std::size_t> first_line;
    std::vector<std::size_t> blank_lines;
    while (pos < text.size() && merges_.size() < max_merges) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      const std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      if (++line_no == 1) continue;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
        blank_lines.push_back(line_no);
        continue;
      }
      SPO_EXPECT(blank_lines.empty(), source << ":" << blank_lines.front() << ": empty line inside the merges");
      const std::size_t space = line.find(' ');
      const bool ok = space != std::string_view::npos && space > 0 && space + 1 < line.size() &&
                      line.find_first_of(" \t\r", space + 1) == std::string_view::npos;
      SPO_EXPECT(ok, source << ":" << line_no << ": malformed merge '" << line << "' (expected 'left right')");
      const std::string left(line.substr(0, space));
      const std::string right(line.substr(space + 1));
      const auto a = vocab_.find(left);
      const auto b = vocab_.find(right);
      SPO_EXPECT(a != vocab_.end() && b != vocab_.end(), source << ":" << line_no << ": merge '" << line << "': '"
                                                                << (a == vocab_.end() ? left : right)
                                                                << "' is not in the vocabulary");
      const auto merged = vocab_.find(left + right);
      SPO_EXPECT(merged != vocab_.end(), source << ":" << line_no << ": merge '" << line << "': the result '" << left
                                                << right << "' is not in the vocabulary");
      const std::uint64_t key = pair_key(a->second, b->second);
      const auto [it, fresh] = first_line.emplace(key, line_no);
      SPO_EXPECT(fresh, source << ":" << line_no << ": merge '" << line << "' repeats line " << it->second);
      merges_.emplace(key, Merge{static_cast<std::int32_t>(merges_.size()), merged->second});
    }
  }

  /// The token of field `key` ("bos_token", ...) of a special-token file: a string or an AddedToken object.
  static bool read_special(const io::json& j, const std::string& key, const std::string& source,
                           detail::clip::SpecialToken& token, bool string_normalized) {
    if (!j.contains(key) || j.at(key).is_null()) return false;
    const io::json& v = j.at(key);
    if (v.is_string()) {
      token.content = v.get<std::string>();
      token.normalized = string_normalized;
      return true;
    }
    SPO_EXPECT(v.is_object() && v.contains("content") && v.at("content").is_string(),
               source << ": " << key << ": expected a string or an object with \"content\"");
    token.content = v.at("content").get<std::string>();
    token.normalized = string_normalized;
    if (v.contains("normalized")) {
      SPO_EXPECT(v.at("normalized").is_boolean(), source << ": " << key << ".normalized: expected a boolean");
      token.normalized = v.at("normalized").get<bool>();
    }
    for (const char* flag : {"lstrip", "rstrip", "single_word"})
      SPO_EXPECT(!v.contains(flag) || v.at(flag) == false,
                 source << ": " << key << "." << flag << ": true is not implemented by spo's CLIP tokenizer");
    return true;
  }

  void read_special_tokens(const std::filesystem::path& dir) {
    // CLIPTokenizer's defaults; a plain-string bos/eos/unk is matched after normalisation, a plain-string pad
    // (SDXL tokenizer_2's "!") before it, as transformers registers them.
    std::array<detail::clip::SpecialToken, 4> tokens{{{"<|startoftext|>", 0, true},
                                                      {"<|endoftext|>", 0, true},
                                                      {"<|endoftext|>", 0, true},
                                                      {"<|endoftext|>", 0, false}}};
    const std::array<std::string, 4> keys{"bos_token", "eos_token", "unk_token", "pad_token"};
    for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
      const std::filesystem::path path = dir / file;
      if (!std::filesystem::exists(path)) continue;
      const std::string source = path.string();
      const io::json j = io::parse_json(io::read_file_text(path), source);
      SPO_EXPECT(j.is_object(), source << ": expected a JSON object");
      for (std::size_t k = 0; k < keys.size(); ++k) read_special(j, keys[k], source, tokens[k], k < 3);
      for (const char* key : {"sep_token", "cls_token", "mask_token"})
        SPO_EXPECT(!j.contains(key) || j.at(key).is_null(),
                   source << ": " << key << ": not implemented by spo's CLIP tokenizer");
      SPO_EXPECT(!j.contains("additional_special_tokens") || j.at("additional_special_tokens").empty(),
                 source << ": additional_special_tokens: not implemented by spo's CLIP tokenizer");
      for (const char* key : {"padding_side", "truncation_side"})
        SPO_EXPECT(!j.contains(key) || j.at(key) == "right",
                   source << ": " << key << ": only \"right\" is implemented, got " << j.at(key).dump());
      if (j.contains("model_max_length")) {
        const io::json& m = j.at("model_max_length");
        SPO_EXPECT(m.is_number_integer() && m.get<std::int64_t>() >= 2 && m.get<std::int64_t>() <= (1 << 20),
                   source << ": model_max_length: expected an integer in [2, 2^20], got " << m.dump());
        model_max_length_ = m.get<int>();
      }
      if (j.contains("added_tokens_decoder")) {
        SPO_EXPECT(j.at("added_tokens_decoder").is_object(), source << ": added_tokens_decoder: expected an object");
        for (const auto& [id, entry] : j.at("added_tokens_decoder").items()) {
          detail::clip::SpecialToken added;
          read_special(j.at("added_tokens_decoder"), id, source, added, true);
          const auto match =
              std::find_if(tokens.begin(), tokens.end(), [&](const auto& t) { return t.content == added.content; });
          SPO_EXPECT(match != tokens.end(), source << ": added_tokens_decoder." << id << ": added token '"
                                                   << added.content << "' is not implemented (only bos/eos/unk/pad)");
          SPO_EXPECT(!id.empty() && id.size() < 10 && id.find_first_not_of("0123456789") == std::string::npos &&
                         token_id_or(added.content, -1) == std::stoll(id),
                     source << ": added_tokens_decoder." << id << ": '" << added.content << "' has id "
                            << token_id_or(added.content, -1) << " in vocab.json");
          for (auto& t : tokens)
            if (t.content == added.content) t.normalized = added.normalized;
        }
      }
    }
    for (std::size_t k = 0; k < tokens.size(); ++k) {
      tokens[k].id = token_id_or(tokens[k].content, -1);
      SPO_EXPECT(tokens[k].id >= 0, (dir / "vocab.json").string() << ": special token " << keys[k] << " '"
                                                                  << tokens[k].content << "' is not in the vocabulary");
      const bool seen = std::any_of(patterns_.begin(), patterns_.end(),
                                    [&](const Pattern& p) { return p.content == tokens[k].content; });
      if (seen) continue;  // the first registration (bos, eos, unk, pad order) decides the flags
      const std::u32string raw = detail::clip::decode_utf8(tokens[k].content, keys[k]);
      patterns_.push_back(
          {tokens[k].content, tokens[k].normalized ? normalize(raw) : raw, tokens[k].id, tokens[k].normalized});
    }
    bos_id_ = tokens[0].id;
    eos_id_ = tokens[1].id;
    pad_id_ = tokens[3].id;
  }

  std::int32_t token_id_or(const std::string& token, std::int32_t fallback) const {
    const auto it = vocab_.find(token);
    return it == vocab_.end() ? fallback : it->second;
  }

  struct Merge {
    std::int32_t rank = 0;
    std::int32_t id = 0;
  };
  struct Pattern {
    std::string content;
    std::u32string text;
    std::int32_t id = 0;
    bool normalized = true;
  };

  ClipTokenizer() = default;

  std::unordered_map<std::string, std::int32_t> vocab_;
  std::unordered_map<std::uint64_t, Merge> merges_;
  std::array<std::int32_t, 256> byte_ids_{};
  std::array<std::int32_t, 256> byte_end_ids_{};
  std::vector<Pattern> patterns_;
  std::int32_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0;
  int model_max_length_ = 77;
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace spo::text
