"""`latentmas-ray score`: score saved completions (ours or another system's) against a task."""

from __future__ import annotations

import json
from collections import Counter

from latentmas_ray.store.atomic import atomic_open
from ..errors import DataError
from latentmas_ray.run.progress import progress_bar
from ..tasks.files import BadRow, SkippedRow, field, parse_each, read_rows
from ..tasks.registry import load_task
from ..tasks.scoring import score_samples


def _parse_prediction(line: int, row: dict) -> tuple[int, str, str]:
    if "id" not in row:
        raise BadRow("missing field 'id'")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise BadRow(f"field 'id' should be a string or integer, got {type(row['id']).__name__}")
    completion = field(row, "completion", str, nonempty=False)
    return line, str(row["id"]), completion


def sandbox_summary(level: str = "standard") -> str:
    """One line saying what the code sandbox enforces on this machine at `level` (raises
    SandboxUnavailable, one line naming what is missing, when it cannot give it)."""
    from ..sandbox import sandbox_capabilities
    caps = sandbox_capabilities(level)
    on = [k for k in ("pid_namespace", "net_namespace", "landlock", "unprivileged_uid",
                      "cgroup_pids", "cgroup_memory") if caps.get(k)]
    missing = [k for k in ("pid_namespace", "net_namespace", "landlock") if not caps.get(k)]
    text = f"level {level}: rlimits ({caps.get('rlimits')}), " + ", ".join(on)
    return text + (f"; NOT available: {', '.join(missing)}" if missing else "")


def run_score(args, console) -> int:
    task = load_task(args.task, args.data, seed=args.seed, on_bad_row=args.on_bad_row)
    by_id = {s.id: s for s in task.samples}

    rows, skipped = read_rows(args.predictions, args.on_bad_row, what="predictions file")
    preds, bad = parse_each(rows, args.predictions, args.on_bad_row, _parse_prediction)
    skipped += bad

    seen: dict[str, int] = {}
    chosen = []
    for line, pid, completion in preds:
        problem = None
        if pid not in by_id:
            problem = (f"id {pid!r} is not a sample of {args.task} (from {task.source}); "
                       "check --task/--data, and --seed for gpqa whose option order depends on it")
        elif pid in seen:
            problem = f"id {pid!r} appears twice (first on line {seen[pid]})"
        if problem:
            if args.on_bad_row == "skip":
                skipped.append(SkippedRow(args.predictions, line, problem))
                continue
            raise DataError(problem, args.predictions, line,
                            hint="fix the row, or pass --on-bad-row skip to record it and go on")
        seen[pid] = line
        chosen.append((by_id[pid], completion))

    samples = [s for s, _ in chosen]
    level = getattr(args, "sandbox_level", "standard")
    if task.spec.kind == "code":
        console.print(f"sandbox: {sandbox_summary(level)}", highlight=False)
    with progress_bar(console, "scoring", total=len(samples)) as advance:
        scores = score_samples(samples, [c for _, c in chosen], args.scoring,
                               workers=args.workers, progress=advance, sandbox_level=level)

    if args.output:
        with atomic_open(args.output) as f:
            for s, sc in zip(samples, scores):
                f.write(json.dumps({"id": s.id, "task": s.task, "correct": sc.correct,
                                    "extracted": sc.extracted, "gold": s.gold if s.kind != "code" else None,
                                    "error": sc.error}) + "\n")
            for sk in skipped:
                f.write(json.dumps({"skipped": True, "file": sk.path, "line": sk.line,
                                    "reason": sk.reason}) + "\n")
    for sk in skipped:
        console.print(f"[yellow]skipped[/] {sk.path}:{sk.line}: {sk.reason}", highlight=False)
    n_pass = sum(sc.correct for sc in scores)
    errors = Counter(sc.error for sc in scores if sc.error)
    if errors:
        top = ", ".join(f"{n}x {e[:60]}" for e, n in errors.most_common(3))
        console.print(f"most common errors: {top}", highlight=False)
    missing = len(task.samples) - len(samples)
    if missing:
        console.print(f"{missing} samples of {args.task} have no prediction (not counted)")
    print(f"{n_pass} passed, {len(scores) - n_pass} failed", flush=True)
    return 0
