"""GSM8K and AIME 2024/2025: free-form math answers."""

from __future__ import annotations

import re

from .base import Sample
from .files import BadRow, field

# The reference's gold extraction for GSM8K (REFERENCE.md 6.1). Note it stops at a thousands
# comma ("#### 2,125" -> "2"): kept only for --scoring reference.
_REF_GSM8K_GOLD = re.compile(r"####\s*([-+]?\d+(?:\.\d+)?)")


def _validated(gold: str) -> str:
    from .answers.math_answers import normalize_gold_math
    try:
        normalize_gold_math(gold)
    except ValueError as e:
        raise BadRow(f"unparseable gold answer {gold!r}: {e}") from None
    return gold


def parse_gsm8k(index: int, row: dict) -> Sample:
    question = field(row, "question").strip()
    answer = field(row, "answer")
    if "####" not in answer:
        raise BadRow("field 'answer' has no '#### <number>' final answer")
    gold = _validated(answer.rsplit("####", 1)[1].strip())
    ref = _REF_GSM8K_GOLD.search(answer)
    return Sample(id=str(row.get("id", index)), task="gsm8k", question=question, gold=gold,
                  kind="math", meta={"reference_gold": ref.group(1).strip().lower() if ref else ""})


def _fix_decoded_escapes(text: str) -> str:
    # Some AIME 2025 copies decoded "\f" of "\frac" as a form feed and "\t" of "\triangle" as a
    # TAB (datasets/SOURCES.md); put the backslash sequences back.
    return text.replace("\x0c", "\\f").replace("\t", "\\t")


def make_parse_aime(task: str):
    def parse(index: int, row: dict) -> Sample:
        key = "problem" if "problem" in row else "question"
        question = _fix_decoded_escapes(field(row, key).strip())
        raw = field(row, "answer", (str, int))
        gold = str(raw).strip()
        if not re.fullmatch(r"\d{1,3}", gold):
            raise BadRow(f"unparseable gold answer {gold!r}: AIME answers are integers 0-999")
        sid = row.get("id", index)
        return Sample(id=str(sid), task=task, question=question, gold=gold, kind="math",
                      meta={"reference_gold": gold.lower(), "integer": True})
    return parse
