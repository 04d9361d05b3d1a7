// SPDX-License-Identifier: MIT
#include "spo/text/clip_tokenizer.hpp"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "spo/io/atomic_file.hpp"
#include "spo/io/json.hpp"

#include <unistd.h>

using namespace spo;
namespace fs = std::filesystem;

namespace {

const fs::path data_dir = fs::path(SPO_TEST_DATA_DIR) / "clip_tokenizer";

io::json golden() { return io::parse_json(io::read_file_text(data_dir / "golden.json"), "golden.json"); }

/// A scratch copy of the tokenizer/ folder, removed on destruction.
struct ScratchFolder {
  fs::path dir;
  explicit ScratchFolder(const std::string& name)
      : dir(fs::temp_directory_path() / ("spo_clip_tokenizer_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"})
      fs::copy_file(data_dir / "tokenizer" / f, dir / f);
  }
  ~ScratchFolder() { fs::remove_all(dir); }
  void write(const std::string& file, const std::string& text) const {
    std::ofstream(dir / file, std::ios::binary | std::ios::trunc) << text;
  }
  std::string read(const std::string& file) const { return io::read_file_text(dir / file); }
};

}  // namespace

TEST_CASE("CLIP tokenizer: ids equal CLIPTokenizerFast's for every golden prompt, EOS and '!' padding") {
  const io::json g = golden();
  const auto prompts = g.at("prompts").get<std::vector<std::string>>();
  REQUIRE(prompts.size() >= 40);
  for (const char* folder : {"tokenizer", "tokenizer_2"}) {
    const auto tok = text::ClipTokenizer::load(data_dir / folder);
    const io::json& ref = g.at(folder);
    CHECK(tok.model_max_length() == 77);
    CHECK(tok.vocab_size() == ref.at("vocab_size").get<std::int64_t>());
    CHECK(tok.num_merges() == 304);
    CHECK(tok.bos_id() == tok.vocab_size() - 2);
    CHECK(tok.eos_id() == tok.vocab_size() - 1);
    CHECK(tok.pad_id() == (std::string(folder) == "tokenizer" ? tok.eos_id() : 0));
    int long_prompts = 0;
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      CAPTURE(folder);
      CAPTURE(i);
      CAPTURE(prompts[i]);
      const auto tokens = tok.tokenize(prompts[i]);
      CHECK(tokens == ref.at("tokens").at(i).get<std::vector<std::int32_t>>());
      CHECK(tok.encode(prompts[i]) == ref.at("ids").at(i).get<std::vector<std::int32_t>>());
      long_prompts += tokens.size() > 75;
    }
    CHECK(long_prompts >= 10);  // truncation is exercised (long prompts and the Unicode sweeps)
  }
}

TEST_CASE("CLIP tokenizer: the two pad conventions and the special strings inside a prompt") {
  const auto sd = text::ClipTokenizer::load(data_dir / "tokenizer");
  const auto xl = text::ClipTokenizer::load(data_dir / "tokenizer_2");
  // "!" is a special token of SDXL's tokenizer_2 (its pad, matched before normalisation): "!! !" is three id-0
  // tokens there, while the EOS-padded tokenizer byte-pair encodes the words "!!" and "!".
  const auto a = sd.tokenize("hello!! !");
  const auto b = xl.tokenize("hello!! !");
  REQUIRE(b.size() >= 4);
  CHECK(std::vector<std::int32_t>(b.end() - 3, b.end()) == std::vector<std::int32_t>{0, 0, 0});
  CHECK(a.back() == sd.token_id("!</w>"));
  CHECK(std::vector<std::int32_t>(a.begin(), a.end() - 3) == std::vector<std::int32_t>(b.begin(), b.end() - 3));
  CHECK(sd.encode("")[1] == sd.eos_id());
  CHECK(sd.encode("")[2] == sd.eos_id());
  CHECK(xl.encode("")[2] == 0);
  CHECK(sd.tokenize("<|ENDOFTEXT|>") == std::vector<std::int32_t>{sd.eos_id()});  // matched after lower-casing
  const std::vector<std::int32_t> long_ids = sd.encode(std::string(500, 'a') + " b c d");
  CHECK(long_ids.size() == 77);
  CHECK(long_ids.back() == sd.eos_id());
}

TEST_CASE("CLIP tokenizer: normalisation is NFC, white space runs to one space, per-character lower case") {
  CHECK(text::ClipTokenizer::normalize("Cafe\xCC\x81  \t\nOK") == "caf\xC3\xA9 ok");
  CHECK(text::ClipTokenizer::normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8") == "\xEA\xB0\x81");  // jamo -> 각
  CHECK(text::ClipTokenizer::normalize("\xE2\x84\xAB") == "\xC3\xA5");                              // Å (U+212B) -> å
  CHECK(text::ClipTokenizer::normalize("e\xCC\x81\xCC\xA3") == "\xE1\xBA\xB9\xCC\x81");  // ẹ́: dot below first
  CHECK(text::ClipTokenizer::normalize("\xCE\xA3\xCE\x91\xCE\xA3") == "\xCF\x83\xCE\xB1\xCF\x83");  // ΣΑΣ -> σασ
  CHECK(text::ClipTokenizer::normalize("\xC4\xB0") == "i\xCC\x87");                                 // İ -> i̇
  CHECK(text::ClipTokenizer::normalize("a\xC2\xA0\xE3\x80\x80"
                                       "b\x1C") == "a b\x1C");  // NBSP, U+3000; not U+001C
}

TEST_CASE("CLIP tokenizer: bad folders and prompts are errors naming the file, line or byte") {
  SUBCASE("missing vocabulary or merges") {
    ScratchFolder f("missing");
    fs::remove(f.dir / "merges.txt");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir),
                         doctest::Contains("merges.txt: CLIP tokenizer merges not found"), spo::input_error);
    fs::remove(f.dir / "vocab.json");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir), doctest::Contains("vocab.json: CLIP tokenizer vocabulary"),
                         spo::input_error);
  }
  SUBCASE("malformed merges line") {
    ScratchFolder f("malformed");
    f.write("merges.txt", "#version: 0.2\nt h\nthe\n");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir), doctest::Contains("merges.txt:3: malformed merge 'the'"),
                         spo::input_error);
    f.write("merges.txt", "#version: 0.2\nt h\na b c\n");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir), doctest::Contains("merges.txt:3: malformed merge"),
                         spo::input_error);
  }
  SUBCASE("merge parts or result not in the vocabulary") {
    ScratchFolder f("merge_vocab");
    f.write("merges.txt", "#version: 0.2\nt h\nq z</w>\n");
    CHECK_THROWS_WITH_AS(
        text::ClipTokenizer::load(f.dir),
        doctest::Contains("merges.txt:3: merge 'q z</w>': the result 'qz</w>' is not in the vocabulary"),
        spo::input_error);
    f.write("merges.txt", "#version: 0.2\nt h\nth zz\n");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir),
                         doctest::Contains("merges.txt:3: merge 'th zz': 'zz' is not"), spo::input_error);
  }
  SUBCASE("special tokens") {
    ScratchFolder f("specials");
    f.write("special_tokens_map.json", R"({"pad_token": "<pad>"})");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir),
                         doctest::Contains("special token pad_token '<pad>' is not in the vocabulary"),
                         spo::input_error);
    std::string vocab = f.read("vocab.json");
    vocab.replace(vocab.find("\"<|startoftext|>\""), 17, "\"<|start|>\"");
    f.write("vocab.json", vocab);
    f.write("special_tokens_map.json", "{}");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir),
                         doctest::Contains("special token bos_token '<|startoftext|>' is not in the vocabulary"),
                         spo::input_error);
  }
  SUBCASE("unimplemented special-token fields") {
    ScratchFolder f("fields");
    f.write("special_tokens_map.json", R"({"pad_token": {"content": "!", "lstrip": true}})");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir),
                         doctest::Contains("pad_token.lstrip: true is not implemented"), spo::input_error);
    f.write("special_tokens_map.json", R"({"mask_token": "!"})");
    CHECK_THROWS_WITH_AS(text::ClipTokenizer::load(f.dir), doctest::Contains("mask_token: not implemented"),
                         spo::input_error);
  }
  SUBCASE("defaults without the optional config files") {
    ScratchFolder f("defaults");
    fs::remove(f.dir / "special_tokens_map.json");
    fs::remove(f.dir / "tokenizer_config.json");
    const auto tok = text::ClipTokenizer::load(f.dir);
    CHECK(tok.model_max_length() == 77);
    CHECK(tok.pad_id() == tok.eos_id());
    CHECK(tok.encode("a photo of a cat") ==
          text::ClipTokenizer::load(data_dir / "tokenizer").encode("a photo of a cat"));
  }
  const auto tok = text::ClipTokenizer::load(data_dir / "tokenizer");
  CHECK_THROWS_WITH_AS(tok.encode("ab\xC3"), doctest::Contains("truncated UTF-8 sequence at byte 2"), spo::input_error);
  CHECK_THROWS_WITH_AS(tok.encode("a\xFF"), doctest::Contains("invalid UTF-8 at byte 1"), spo::input_error);
  CHECK_THROWS_WITH_AS(tok.encode("\xED\xA0\x80"), doctest::Contains("invalid UTF-8 at byte 0"), spo::input_error);
}
