"""Generates include/spo/text/detail/unicode_tables.hpp: the Unicode data spo's CLIP tokenizer needs, from Python's
unicodedata (the Unicode version of the Python that runs it is written into the header).

Tables (code point ranges, sorted, disjoint):
- letters: general category L* (Lu Ll Lt Lm Lo), i.e. regex `\\p{L}`;
- numbers: general category N* (Nd Nl No), i.e. regex `\\p{N}`;
- white_space: the Unicode White_Space property, i.e. `\\s` of Rust's regex and Oniguruma (the regex engine of the
  `tokenizers` library). It is Python's str.isspace() without U+001C..U+001F (bidi class B/S but not White_Space);
- lower_runs: the simple per-character lower-case mapping (`ch.lower()` of one character, which is Rust's
  `char::to_lowercase`) as runs (first, last, stride, delta); the one mapping to two characters (U+0130 -> U+0069
  U+0307) is checked here and handled in C++;
- combining_classes: canonical combining class ranges (non-zero only);
- decompositions: canonical single-level decompositions (one or two code points; Hangul syllables are algorithmic
  and not listed), with a flag for the two-code-point ones that are primary composites (canonical composition
  uses them; composition exclusions, singletons and non-starter decompositions do not compose).

The header is formatted with clang-format-14 (which must be on PATH), as the project's format check requires.

    python3 tools/reference/unicode_tables.py include/spo/text/detail/unicode_tables.hpp
"""
import subprocess
import sys
import unicodedata

MAX = 0x110000


def is_surrogate(c):
    return 0xD800 <= c <= 0xDFFF


def ranges(pred):
    out = []
    start = None
    for c in range(MAX + 1):
        ok = c < MAX and not is_surrogate(c) and pred(c)
        if ok and start is None:
            start = c
        elif not ok and start is not None:
            out.append((start, c - 1))
            start = None
    return out


def lower_map():
    m = {}
    for c in range(MAX):
        if is_surrogate(c):
            continue
        low = chr(c).lower()
        if low == chr(c):
            continue
        if len(low) != 1:
            assert c == 0x130 and low == "i\u0307", (hex(c), low)
            continue
        m[c] = ord(low)
    return m


def lower_runs(m):
    keys = sorted(m)
    runs = []
    i = 0
    while i < len(keys):
        first = keys[i]
        delta = m[first] - first
        stride = 1
        last = first
        j = i + 1
        if j < len(keys) and m[keys[j]] - keys[j] == delta and keys[j] - first in (1, 2):
            stride = keys[j] - first
            if stride == 2 and first + 1 in m:
                stride = 1
        while j < len(keys) and keys[j] == last + stride and m[keys[j]] - keys[j] == delta:
            if stride == 2 and last + 1 in m:
                break
            last = keys[j]
            j += 1
        runs.append((first, last, stride, delta))
        i = j
    return runs


def combining_ranges():
    out = []
    for c in range(MAX):
        if is_surrogate(c):
            continue
        k = unicodedata.combining(chr(c))
        if k == 0:
            continue
        if out and out[-1][1] == c - 1 and out[-1][2] == k:
            out[-1] = (out[-1][0], c, k)
        else:
            out.append((c, c, k))
    return out


def decompositions():
    out = []
    for c in range(MAX):
        if is_surrogate(c):
            continue
        d = unicodedata.decomposition(chr(c))
        if not d or d.startswith("<"):
            continue
        parts = [int(p, 16) for p in d.split()]
        assert 1 <= len(parts) <= 2, hex(c)
        composes = len(parts) == 2 and unicodedata.normalize("NFC", chr(c)) == chr(c)
        out.append((c, parts[0], parts[1] if len(parts) == 2 else 0, composes))
    return out


def emit_rows(items, fmt, per_line):
    cells = [fmt(x) for x in items]
    lines = []
    for i in range(0, len(cells), per_line):
        lines.append("    " + ", ".join(cells[i : i + per_line]) + ",")
    return "\n".join(lines)


def main(path):
    white = set(c for c in range(MAX) if not is_surrogate(c) and chr(c).isspace()) - set(range(0x1C, 0x20))
    letters = ranges(lambda c: unicodedata.category(chr(c)).startswith("L"))
    numbers = ranges(lambda c: unicodedata.category(chr(c)).startswith("N"))
    spaces = ranges(lambda c: c in white)
    runs = lower_runs(lower_map())
    ccc = combining_ranges()
    dec = decompositions()
    version = unicodedata.unidata_version
    h = lambda c: f"0x{c:X}"
    rng = lambda r: "{" + h(r[0]) + ", " + h(r[1]) + "}"
    text = f"""// SPDX-License-Identifier: MIT
/// @brief Unicode {version} tables for the CLIP tokenizer: letters, numbers, white space, lower case, NFC data.
// Generated from Python's unicodedata (Unicode {version}); do not edit. Regenerate with
//   python3 tools/reference/unicode_tables.py include/spo/text/detail/unicode_tables.hpp
#pragma once

#ifndef SPO_TEXT_DETAIL_UNICODE_TABLES_ALLOWED
#error "spo/text/detail/unicode_tables.hpp is private; include spo/text/clip_tokenizer.hpp"
#endif

#include <cstdint>

namespace spo::text::detail::unicode {{

inline constexpr char version[] = "{version}";

/// Inclusive code point range.
struct Range {{
  char32_t first;
  char32_t last;
}};

/// Code points first, first + stride, ..., last map to code point + delta under the simple lower-case mapping.
struct LowerRun {{
  char32_t first;
  char32_t last;
  std::int32_t stride;
  std::int32_t delta;
}};

/// Canonical combining class `ccc` (non-zero) of every code point in [first, last].
struct CombiningClassRange {{
  char32_t first;
  char32_t last;
  std::int32_t ccc;
}};


/// General category L* (regex \\p{{L}}).
inline constexpr Range letters[] = {{
{emit_rows(letters, rng, 6)}
}};

/// General category N* (regex \\p{{N}}).
inline constexpr Range numbers[] = {{
{emit_rows(numbers, rng, 6)}
}};

/// White_Space property (regex \\s of Rust regex and Oniguruma).
inline constexpr Range white_space[] = {{
{emit_rows(spaces, rng, 6)}
}};

/// Simple lower-case mapping; U+0130 (to U+0069 U+0307) is the one code point mapping to two and is not listed.
inline constexpr LowerRun lower_runs[] = {{
{emit_rows(runs, lambda r: "{" + h(r[0]) + ", " + h(r[1]) + ", " + str(r[2]) + ", " + str(r[3]) + "}", 4)}
}};

inline constexpr CombiningClassRange combining_classes[] = {{
{emit_rows(ccc, lambda r: "{" + h(r[0]) + ", " + h(r[1]) + ", " + str(r[2]) + "}", 5)}
}};

/// Canonical single-level decompositions, sorted by code, packed as code << 43 | first << 22 | second << 1 |
/// composes: code -> first (second == 0) or first second; `composes` marks a primary composite (canonical
/// composition maps the pair back to code).
inline constexpr std::uint64_t decompositions[] = {{
{emit_rows(dec, lambda r: f"0x{(r[0] << 43) | (r[1] << 22) | (r[2] << 1) | int(r[3]):X}", 5)}
}};

}}  // namespace spo::text::detail::unicode
"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    subprocess.run(["clang-format-14", "-i", path], check=True)
    print(f"{path}: Unicode {version}, {len(letters)} letter / {len(numbers)} number / {len(spaces)} space ranges, "
          f"{len(runs)} lower-case runs, {len(ccc)} combining-class ranges, {len(dec)} decompositions")


if __name__ == "__main__":
    main(sys.argv[1])
