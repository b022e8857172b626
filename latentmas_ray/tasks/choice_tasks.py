"""ARC-Easy/Challenge, GPQA-Diamond and MedQA: four lettered options, one correct."""

from __future__ import annotations

import ast
import hashlib
import random
import re

from .base import Sample
from .files import BadRow, field

LETTERS = "ABCDE"  # ARC on the hub has a few 3- and 5-option questions; local files have 4.


def lettered(stem: str, options: list[str]) -> str:
    """The question as the prompts need it: the stem, then one "X. option" line per option."""
    lines = [f"{LETTERS[i]}. {opt.strip()}" for i, opt in enumerate(options)]
    return stem.strip() + "\n" + "\n".join(lines)


def _choice(task: str, sid: str, stem: str, options: list[str], gold_index: int, **meta) -> Sample:
    if not 2 <= len(options) <= len(LETTERS):
        raise BadRow(f"expected 2 to {len(LETTERS)} options, got {len(options)}")
    if not 0 <= gold_index < len(options):
        raise BadRow(f"gold answer index {gold_index} is out of range for {len(options)} options")
    letter = LETTERS[gold_index]
    meta.setdefault("reference_gold", letter.lower())
    return Sample(id=sid, task=task, question=lettered(stem, options), gold=letter,
                  kind="choice", meta={"options": list(options), **meta})


def make_parse_arc(task: str):
    def parse(index: int, row: dict) -> Sample:
        if "query" in row:  # llm-foundry format: query "Question: ...", choices [str], gold int
            stem = field(row, "query")
            stem = stem[len("Question:"):].strip() if stem.startswith("Question:") else stem
            options = field(row, "choices", list)
            if not all(isinstance(o, str) for o in options):
                raise BadRow("field 'choices' should be a list of strings")
            gold = field(row, "gold", int)
            return _choice(task, str(row.get("id", index)), stem, options, gold)
        # allenai/ai2_arc hub format: question, choices {text, label}, answerKey ("A".. or "1"..)
        stem = field(row, "question")
        choices = field(row, "choices", dict)
        options, labels = choices.get("text"), choices.get("label")
        if not isinstance(options, list) or not isinstance(labels, list) or len(options) != len(labels):
            raise BadRow("field 'choices' needs equal-length 'text' and 'label' lists")
        key = str(field(row, "answerKey")).strip()
        labels = [str(lab).strip() for lab in labels]
        if key not in labels:
            raise BadRow(f"answerKey {key!r} is not one of the labels {labels}")
        return _choice(task, str(row.get("id", index)), stem, options, labels.index(key))
    return parse


def gpqa_permutation(seed: int, sample_id: str, n: int = 4) -> list[int]:
    """The option order for one GPQA question: a pure function of the run seed and the sample
    id, so it is the same on every replica and in every batch."""
    digest = hashlib.sha256(f"gpqa:{seed}:{sample_id}".encode()).digest()
    order = list(range(n))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


def make_parse_gpqa(seed: int):
    def parse(index: int, row: dict) -> Sample:
        if "Correct Answer" in row:  # the official CSV: correct + three incorrect answers
            sid = str(row.get("Record ID") or index)
            stem = field(row, "Question")
            answers = [field(row, "Correct Answer")] + [
                field(row, f"Incorrect Answer {k}") for k in (1, 2, 3)]
            order = gpqa_permutation(seed, sid)
            options = [answers[j].strip() for j in order]
            return _choice("gpqa", sid, stem, options, order.index(0))
        # fingertap/GPQA-Diamond hub format: options already embedded in `question`, `answer` a letter
        question = field(row, "question").strip()
        letter = field(row, "answer").strip().strip("()").upper()
        if letter not in LETTERS[:4]:
            raise BadRow(f"unparseable gold answer {letter!r}: expected a letter A-D")
        return Sample(id=str(row.get("id", index)), task="gpqa", question=question, gold=letter,
                      kind="choice", meta={"reference_gold": letter.lower()})
    return parse


_OPTION_PREFIX = re.compile(r"^\s*\(?([A-Ea-e])[.):]\s*")


def parse_medqa(index: int, row: dict) -> Sample:
    options = field(row, "options", (list, str))
    if isinstance(options, str):  # some exports store the list as its Python repr
        try:
            options = ast.literal_eval(options)
        except (ValueError, SyntaxError):
            raise BadRow("field 'options' is neither a list nor a list literal") from None
    texts = [_OPTION_PREFIX.sub("", str(o)).strip() for o in options]
    answer = str(field(row, "answer", (str, int))).strip()
    # Exact option text first; then the reference's rule, the first option containing the answer.
    # (An answer found in no option is an error here; the reference silently reused the
    # previous row's letter.)
    exact = [i for i, t in enumerate(texts) if t == answer]
    contains = [i for i, t in enumerate(texts) if answer in t]
    if not (exact or contains):
        raise BadRow(f"unparseable gold answer: {answer!r} is not one of the options {texts}")
    gold = exact[0] if exact else contains[0]
    stem = row.get("question") if isinstance(row.get("question"), str) else ""
    stem = _strip_listed_options(stem, options) if stem else field(row, "query")
    # `idx`/`pid` repeat in this file (0-99 appear more than once), so the position is the id.
    sid = str(index)
    return _choice("medqa", sid, stem, texts, gold, reference_gold=LETTERS[contains[0]].lower())


def _strip_listed_options(question: str, options: list) -> str:
    """MedQA's `question` repeats the option list (twice); keep the stem, the options are
    re-added once by `lettered`."""
    first = str(options[0]).strip() if options else ""
    cut = question.find("\n" + first) if first else -1
    return question[:cut].strip() if cut > 0 else question.strip()
