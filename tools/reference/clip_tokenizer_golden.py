"""Generates tests/data/clip_tokenizer/: two small CLIP BPE tokenizer folders in the diffusers layout and the ids
transformers' tokenizers give for a list of hard prompts, for spo's CLIP tokenizer test.

- tokenizer/ and tokenizer_2/: vocab.json + merges.txt built as the real CLIP vocabulary is (the 256 byte symbols in
  bytes_to_unicode() order, their 256 `</w>` variants, one entry per merge, then <|startoftext|> and <|endoftext|>
  last), with merges learned by byte-pair encoding on a small built-in English prompt corpus; special_tokens_map.json
  and tokenizer_config.json as SD1.5's `tokenizer` (pad <|endoftext|>) and SDXL's `tokenizer_2` (pad "!") have them,
  model_max_length 77.
- golden.json: for every prompt and both folders, the ids of CLIPTokenizerFast (the reference) with
  padding="max_length", max_length=77, truncation=True (as diffusers calls it), the ids without specials, padding or
  truncation (`tokens`), and the slow CLIPTokenizer's padded ids where they differ from the fast ones (`slow_ids`
  by prompt index, listed in `slow_differs`; recorded for documentation; here ftfy is absent, so the slow tokenizer
  cleans text with BasicTokenizer).

The script also checks, for every Unicode code point, that the fast tokenizer's normalizer (NFC, \\s+ -> " ",
lower case) and its split regex agree with the tables of tools/reference/unicode_tables.py (Python's unicodedata),
and records the code points where they do not under `unicode_disagreements` as [first, last, what] runs.

    python tools/reference/clip_tokenizer_golden.py tests/data/clip_tokenizer
"""
import collections
import json
import os
import sys
import unicodedata

from tokenizers import Regex, pre_tokenizers
from transformers import CLIPTokenizer, CLIPTokenizerFast
from transformers.models.clip.tokenization_clip import bytes_to_unicode

NUM_MERGES = 300
# Chosen merges appended to the learned ones: pairs of equal symbols, whose overlapping occurrences ("llll") make the
# leftmost-first order of equal-rank merges visible.
EXTRA_MERGES = [("l", "l"), ("o", "o"), ("e", "e"), ("z", "z</w>")]
MAX_LENGTH = 77
SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

CORPUS = """
a photo of a cat sitting on a wooden table in the morning light
a beautiful landscape painting of mountains and a river at sunset, highly detailed, trending on artstation
portrait of a young woman with long red hair, wearing a green dress, oil painting, masterpiece, best quality
an astronaut riding a horse on the moon, cinematic lighting, photorealistic, 8k, ultra detailed
a cute little dog playing with a ball in the garden, soft focus, bokeh, natural light
the city at night with neon lights and rain, cyberpunk style, reflections on the street
a bowl of fresh fruit on the kitchen counter, still life, studio photography, sharp focus
an old castle on a hill surrounded by a forest, fantasy art, dramatic clouds, golden hour
a man reading a book in a library, warm light, detailed face, realistic skin texture
a futuristic car driving through the desert, concept art, wide angle, dynamic composition
a watercolor illustration of flowers in a vase, pastel colors, delicate brush strokes
a close up of a bird standing on a branch, feathers, nature photography, shallow depth of field
a small house by the lake with a boat, winter, snow falling, peaceful atmosphere
a robot painting a picture of itself, digital art, vibrant colors, intricate details
children playing in the park, summer afternoon, happy, candid photograph
a delicious burger with fries and a drink, food photography, professional lighting
it's a dog's life, they're happy, we've seen it, i'm here, you'll see, he'd know, don't stop
the quick brown fox jumps over the lazy dog while the sun is shining bright
a café in paris with people drinking coffee, naïve art, über cool, crème brûlée
東京 タワー の 夜景, 東京 の 桜
"""

PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "",
    "   ",
    "\t\n",
    "a  photo\tof\na   cat  ",
    "masterpiece, best quality, (ultra detailed:1.2), [[sharp focus]]",
    "hello!world!!! ... ?!? --- ***",
    "a---b...c!!!d",
    "1234567890 3.14 1,000,000 $100 #hashtag @user 50% 2nd 3rd",
    "it's they're we've i'm you'll he'd don't",
    "IT'S THEY'RE WE'VE I'M YOU'LL HE'D DON'T 'S 'T",
    "rock'n'roll ''s '' 'sun' !'s",
    "café naïve über crème brûlée",
    "cafe\u0301 nai\u0308ve u\u0308ber",
    "\u212b \u2126 \u1e0b\u0323 d\u0307\u0323 q\u0307\u0323 \u1100\u1161\u11a8 \uac00\u11a8",
    "\u0041\u030a\u0301 \u00c5\u0301 e\u0301\u0323 e\u0323\u0301",
    "ΟΔΟΣ ΣΑΣ σς Σ İstanbul STRASSE Straße \u1e9e",
    "東京タワーの夜景 北京 서울 こんにちは",
    "emoji 😀👍🏽 👨‍👩‍👧 🇫🇷 ❤️ ✨",
    "ＡＢＣ１２３ Ⅻⅻ x² ½ ٣٤ ৩",
    "nbsp\u00a0here ideographic\u3000space line\u2028sep next\x85line",
    "zero\u200bwidth soft\u00adhyphen file\x1csep bidi\u200eмарк",
    "a<|startoftext|>b <|endoftext|> c<|ENDOFTEXT|>d <|endoftext| <|startoftext|><|endoftext|>",
    "hello!! !",
    "((((best quality)))) ::: ;;; ~~~ ___ +++ === <<< >>> ||| \\\\ // {}",
    " ".join(["a photo of a beautiful landscape with mountains and rivers"] * 12),
    "one two three four five six seven eight nine ten " * 9,
    "ll lll llll lllll balll ballll oooo ooooo feeeee zz zzz zzzz",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "\U0001d400\U0001d41a \U00010400\U00010428 \U0001f600",
]


def sweep_prompts(skip):
    """Prompts made of code points sampled across the planes, to exercise the Unicode tables."""
    starts = [0x80, 0x370, 0x590, 0x900, 0x1000, 0x1E00, 0x2000, 0x2C00, 0x3000, 0xA000, 0xFB00, 0x10000, 0x1D400,
              0x1F000, 0x20000]
    out = []
    for i, s in enumerate(starts):
        cps = [s + 7 * k + i for k in range(60)]
        out.append("".join(chr(c) for c in cps if not 0xD800 <= c <= 0xDFFF and c not in skip))
    return out


def special(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def learn_merges(corpus, n):
    b2u = bytes_to_unicode()
    split = pre_tokenizers.Split(Regex(SPLIT), behavior="removed", invert=True)
    counts = collections.Counter()
    for line in corpus.strip().split("\n"):
        text = unicodedata.normalize("NFC", line).lower()
        for piece, _ in split.pre_tokenize_str(text):
            symbols = [b2u[b] for b in piece.encode("utf-8")]
            symbols[-1] += "</w>"
            counts[tuple(symbols)] += 1
    merges = []
    words = dict(counts)
    for _ in range(n):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], tuple(-ord(ch) for ch in kv[0][0] + " " + kv[0][1])))[0]
        merges.append(best)
        merged = {}
        for w, c in words.items():
            out = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + c
        words = merged
    return merges


def write_folder(path, merges, pad):
    os.makedirs(path, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    for a, b in merges:
        if a + b not in vocab:
            vocab.append(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(path, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(path, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    specials = {"bos_token": special("<|startoftext|>"), "eos_token": special("<|endoftext|>"), "pad_token": pad,
                "unk_token": special("<|endoftext|>")}
    with open(os.path.join(path, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(specials, f, indent=2)
    config = {"add_prefix_space": False, "do_lower_case": True, "errors": "replace", "model_max_length": MAX_LENGTH,
              "tokenizer_class": "CLIPTokenizer"}
    for k, v in specials.items():
        config[k] = dict(v, __type="AddedToken") if isinstance(v, dict) else v
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    return len(vocab)


def unicode_disagreements(fast):
    """Code points where the fast tokenizer's normalizer or split regex differs from Python's unicodedata model."""
    normalizer = fast.backend_tokenizer.normalizer
    split = pre_tokenizers.Split(Regex(SPLIT), behavior="removed", invert=True)
    white = lambda ch: ch.isspace() and not 0x1C <= ord(ch) <= 0x1F
    out = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        expected = "".join(" " if white(x) else x.lower() for x in unicodedata.normalize("NFC", ch))
        if normalizer.normalize_str(ch) != expected:
            out.append({"code_point": c, "what": "normalizer"})
            continue
        cat = unicodedata.category(ch)
        kind = "space" if white(ch) else "letter" if cat[0] == "L" else "number" if cat[0] == "N" else "other"
        pairs = len(split.pre_tokenize_str(ch + ch))
        if pairs == 0:
            got = "space"
        elif len(split.pre_tokenize_str("a" + ch)) == 1:
            got = "letter"
        else:
            got = {1: "other", 2: "number"}[pairs]
        if got != kind:
            out.append({"code_point": c, "what": f"split: {got}, unicodedata: {kind} ({cat})"})
    return out


def as_ranges(disagreements):
    """[first, last, what] runs of consecutive code points with the same disagreement."""
    runs = []
    for d in disagreements:
        c, what = d["code_point"], d["what"]
        if runs and runs[-1][1] == c - 1 and runs[-1][2] == what:
            runs[-1][1] = c
        else:
            runs.append([c, c, what])
    return runs


def main(out_dir):
    merges = learn_merges(CORPUS, NUM_MERGES)
    merges += [m for m in EXTRA_MERGES if m not in merges]
    folders = {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}
    golden = {"max_length": MAX_LENGTH, "unicode_version": unicodedata.unidata_version}
    write_folder(os.path.join(out_dir, "tokenizer"), merges, folders["tokenizer"])
    golden["unicode_disagreements"] = as_ranges(unicode_disagreements(CLIPTokenizerFast.from_pretrained(
        os.path.join(out_dir, "tokenizer"))))
    print(f"unicode: {len(golden['unicode_disagreements'])} runs of code points where the fast tokenizer and "
          f"unicodedata {unicodedata.unidata_version} disagree")
    skip = set(c for first, last, _ in golden["unicode_disagreements"] for c in range(first, last + 1))
    prompts = PROMPTS + sweep_prompts(skip)
    golden["prompts"] = prompts
    for name, pad in folders.items():
        path = os.path.join(out_dir, name)
        n = write_folder(path, merges, pad)
        fast = CLIPTokenizerFast.from_pretrained(path)
        slow = CLIPTokenizer.from_pretrained(path)
        assert fast.model_max_length == MAX_LENGTH and fast.pad_token == pad
        call = lambda t, p: t(p, padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
        ids = [call(fast, p) for p in prompts]
        slow_ids = [call(slow, p) for p in prompts]
        tokens = [fast(p, add_special_tokens=False).input_ids for p in prompts]
        differs = [i for i in range(len(prompts)) if ids[i] != slow_ids[i]]
        golden[name] = {"pad_token": pad, "vocab_size": n, "ids": ids, "tokens": tokens, "slow_differs": differs,
                        "slow_ids": {str(i): slow_ids[i] for i in differs}}
        print(f"{name}: vocab {n}, {len(merges)} merges; slow differs on prompts {golden[name]['slow_differs']}")
    with open(os.path.join(out_dir, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=True, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1])
