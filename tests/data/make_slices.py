"""Rebuild the benchmark slices in tests/data from the full files (../shared/datasets).

    python tests/data/make_slices.py [FULL_DATASETS_DIR]

Each slice keeps the upstream rows unchanged (JSONL lines byte for byte, the MedQA array
re-serialized exactly as upstream writes it), in file order: the first rows of each file, plus
every row a test names by id or position. GPQA is not sliced: its authors ask that its questions
not be published in plain text, so gpqa_diamond.csv here holds synthetic rows
(make_gpqa_synthetic.py). tests/test_full_datasets.py checks that every slice row is an
upstream row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = HERE.parents[2] / "shared" / "datasets"

# Row positions (0-based, in the upstream file) or ids kept per file, and why.
GSM8K_ROWS = sorted(set(range(20))               # test_vllm's 20 samples; ids 0-4 in other tests
                    | {146, 201, 230, 249, 505, 610, 611, 640, 642, 819, 829, 997, 1009, 1206}
                    | {489, 1113})               # all 14 golds with thousands commas; both negatives
AIME2024_IDS = set(range(60, 68))                # 60, 61 first; 67 has the zero-padded gold "025"
AIME2025_IDS = {str(i) for i in range(10)} | {"18", "19", "27"}   # 0: gold 70; 18/19/27: \f, \t
ARC_EASY_ROWS = sorted(set(range(30)) | {93})        # 93: a padded 3-option question
ARC_CHALLENGE_ROWS = sorted(set(range(30)) | {121})  # 121: a padded 3-option question
MEDQA_ROWS = sorted(set(range(10)) | {255})      # 255: answer "X", an exact option among VII/X/XII
# test_code_tasks: every comparison mode and input conversion; the errata rows 737/787/794;
# the heavy rows 255/599; 2, 3, 4 are the file's first rows (test_ray_driver takes 3).
MBPP_IDS = {2, 3, 4, 7, 70, 82, 124, 250, 252, 255, 278, 599, 737, 787, 793, 794}
# test_code_tasks's HE_IDS (32: errata); 0, 1 first (test_cli_score); a few small rows.
HUMANEVAL_IDS = {0, 1, 2, 14, 15, 24, 32, 41, 53, 55, 63}


def _jsonl_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [line for line in f if line.strip()]


def _keep(full: Path, out: Path, name: str, want) -> int:
    """Write the lines of full/name for which want(position, row) holds; returns the count."""
    kept = [line for i, line in enumerate(_jsonl_lines(full / name)) if want(i, json.loads(line))]
    (out / name).write_text("".join(kept), encoding="utf-8", newline="")
    return len(kept)


def _mbpp_number(task_id) -> int:
    return int(str(task_id).split("/")[-1])


def build(full: Path, out: Path = HERE) -> dict[str, int]:
    counts = {
        "gsm8k.jsonl": _keep(full, out, "gsm8k.jsonl", lambda i, r: i in GSM8K_ROWS),
        "aime2024.jsonl": _keep(full, out, "aime2024.jsonl", lambda i, r: r["id"] in AIME2024_IDS),
        "aime2025.jsonl": _keep(full, out, "aime2025.jsonl", lambda i, r: r["id"] in AIME2025_IDS),
        "arc_easy.jsonl": _keep(full, out, "arc_easy.jsonl", lambda i, r: i in ARC_EASY_ROWS),
        "arc_challenge.jsonl": _keep(full, out, "arc_challenge.jsonl",
                                     lambda i, r: i in ARC_CHALLENGE_ROWS),
    }
    for name in ("mbppplus.jsonl", "mbppplus_hf.jsonl"):
        counts[name] = _keep(full, out, name, lambda i, r: _mbpp_number(r["task_id"]) in MBPP_IDS)
    for name in ("humanevalplus.jsonl", "humanevalplus_hf.jsonl"):
        counts[name] = _keep(full, out, name,
                             lambda i, r: _mbpp_number(r["task_id"]) in HUMANEVAL_IDS)
    medqa = json.loads((full / "medqa.json").read_text(encoding="utf-8"))
    rows = [medqa[i] for i in MEDQA_ROWS]
    # upstream's own layout (json.dumps(indent=2, ensure_ascii=False) reproduces the full file)
    (out / "medqa.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False),
                                     encoding="utf-8")
    counts["medqa.json"] = len(rows)
    return counts


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else FULL
    assert src.is_dir(), f"full benchmark files not found at {src}"
    for name, n in build(src).items():
        print(f"{name}: {n} rows, {(HERE / name).stat().st_size:,} bytes")
