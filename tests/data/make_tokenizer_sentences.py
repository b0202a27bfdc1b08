"""Write ``tokenizer_sentences.jsonl``: the sentences the in-graph tokenizer is checked on.

Run from the repository root: ``python tests/data/make_tokenizer_sentences.py``. The output is
committed; this script is its provenance. Rows are ``{"text": ..., "source": ...}``:

* ``sst2`` / ``banking77`` / ``wnut17`` / ``squad``: the first rows of the real slices in this
  folder (their provenance is in README.md), ordinary English text;
* ``edge``: written for this test — accents in several languages, scripts BERT's basic tokenizer
  treats differently (CJK, Hangul, Greek, Devanagari, Thai, Arabic, Hebrew), emoji and ZWJ
  sequences, control and zero-width characters, a NUL byte, full-width forms and ligatures, URLs,
  numbers, special tokens typed as text, empty and whitespace-only strings;
* ``long``: SST-2 sentences joined into 150–1,000 word texts, to exercise truncation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).parent

EDGE = [
    "", " ", "\t\n  \r\n", "a", "A.", "!!!", "...", "¿Qué?", "¡Olé!",
    "Café au lait, crème brûlée and a piña colada.", "Meet José in Zürich on Thursday.",
    "Ångström, Øresund, Æsir — Nordic letters.", "Straße, Fußgänger, Größe: German ß and umlauts.",
    "Résumé vs resume; naïve vs naive; coöperate.", "Ça va? Très bien, merci. L'été dernier à Montréal.",
    "São Paulo, Curaçao, Açores, coração.", "Dvořák, Škoda, Łódź, Kraków, Gdańsk.",
    "İstanbul'da güzel bir gün; ışık, ağaç, şehir.", "Turkish dotless ı and dotted İ: DİYARBAKIR.",
    "Tiếng Việt có dấu: Hà Nội, Đà Nẵng, phở bò.", "Ελληνικά: καλημέρα κόσμε.",
    "Русский текст: привет, мир! Ёжик.", "Українська: їжак, ґанок, є.", "Български: щастие.",
    "中文测试：我爱自然语言处理。", "日本語のテキスト、カタカナとひらがな。", "カタカナ", "ｶﾀｶﾅ half-width katakana",
    "한국어 문장입니다. 안녕하세요!", "한글", "हिन्दी भाषा बहुत सुंदर है।", "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "العربية: مرحبا بالعالم", "עברית: שלום עולם", "Mixed: hello 世界 мир κόσμος עולם!",
    "Emoji 😀😃 are fun 👍🏽", "Family: 👨\u200d👩\u200d👧\u200d👦 and flag 🇫🇷", "I ❤️ this movie ★★★★☆",
    "control\x07char\x00null", "tab\tseparated\tvalues", "line one\nline two\r\nline three",
    "zero\u200bwidth\u200cjoiner\u200dhere", "soft\u00adhyphen", "right\u200fto\u200eleft marks",
    "\ufeffbyte order mark at start", "non\u00a0breaking\u2009thin space", "replacement \ufffd char",
    "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ １２３", "ﬁne ﬂour ligatures ﬀ", "Ⅻ roman numeral Ⅻ, ½ cup, x² + y³",
    "≠ ≤ ≥ ∞ ∑ √ ± × ÷", "€100, £50, ¥2000, ₹300, $5.99", "café", "cafe\u0301 (combining acute)",
    "https://example.com/path?query=1&x=%20y#frag", "email me at someone@example.org!",
    "3.14159 2,718 1e-10 -42 +7 100% 24/7", "2024-11-26T12:30:00Z", "#hashtag @mention $TICKER",
    "[CLS] literal special tokens [SEP]", "[PAD] [UNK] [MASK]", "snake_case camelCase kebab-case",
    "C'est l'œuvre d'Œdipe.", "Ĳssel and ĳs (Dutch ij ligature)", "ǅemal: titlecase digraph",
    "Mañana, niño, año, pingüino.", "Ῥόδος with polytonic Greek", "ΑΒΓΔ uppercase Greek",
    "Ꭰ Cherokee letter", "𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 math letters", "ÀÉÎÕÜ ÇÑ uppercase accents",
    "It's a gripping, beautifully shot film!", "WAS IT GOOD??? NO!!!", "don't won't can't shouldn't",
]


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines()]


def rows() -> list[dict]:
    sst2 = [r["text"] for r in _jsonl("sst2_300.jsonl")]
    out = [{"text": t, "source": "sst2"} for t in sst2[:120]]
    out += [{"text": r["text"], "source": "banking77"} for r in _jsonl("banking77_300.jsonl")[:60]]
    out += [{"text": " ".join(r["tokens"]), "source": "wnut17"} for r in _jsonl("wnut17_200.jsonl")[:40]]
    squad = [s for r in _jsonl("squad_50.jsonl") for s in re.split(r"(?<=[.!?]) ", r["context"])]
    non_ascii = sorted({s for s in squad if re.search(r"[^\x00-\x7f]", s)})
    out += [{"text": s, "source": "squad"} for s in non_ascii[:20]]
    out += [{"text": t, "source": "edge"} for t in EDGE]
    for i, words in enumerate((150, 300, 600, 1000)):  # SST-2 sentences joined until `words` words
        text, j = [], 0
        while sum(len(t.split()) for t in text) < words:
            text.append(sst2[(i * 37 + j) % len(sst2)])
            j += 1
        out.append({"text": " ".join(text), "source": "long"})
    return out


if __name__ == "__main__":
    data = rows()
    path = HERE / "tokenizer_sentences.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
    print(f"wrote {len(data)} rows to {path}")
