#!/usr/bin/env bash
# The first minutes of a cluster run, as a new user meets them (issue 25): cluster/README.md's
# local-cluster example submitted with `ray job submit`, default flags otherwise. Prints
#   seconds from the submit to the first progress line with done > 0 (`ray job logs`)
#   at STOP_AFTER seconds (default 120): the last progress line, then `ray job stop`
#   the rows on disk after the stop, against the samples the replicas had finished before
#   it (each replica appends every sample it finishes to $LATENTMAS_FINISHED_LOG, an audit
#   file this script sets for the cluster's processes; actors/hf_actor.py): a finished
#   sample missing from the disk is lost work
#
#   bash bench/first_progress.sh                       # the README's example
#   bash bench/first_progress.sh --generate_bs 20      # extra flags: e.g. the reference's batch
#
# Starts and stops its own local 2-worker cluster (cluster/local_cluster.py, its own state
# dir); run it with nothing else heavy on the machine (tests take `flock /tmp/latentmas-heavy.lock`).
set -u
cd "$(dirname "$0")/.."
. .venv/bin/activate
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 \
    TOKENIZERS_PARALLELISM=false
unset RAY_ADDRESS RAY_AUTH_MODE
STOP_AFTER=${STOP_AFTER:-120}
WORK=$(mktemp -d /tmp/first-progress-XXXX)
STATE=$WORK/cluster
OUT=$PWD/results/first-progress-$(date +%s)
export LATENTMAS_FINISHED_LOG=$WORK/finished.log     # the replicas inherit it from `ray start`
: >"$LATENTMAS_FINISHED_LOG"
python cluster/local_cluster.py start --workers 2 --state-dir "$STATE" >"$WORK/start.out" \
    2>"$WORK/start.err" || { cat "$WORK/start.err"; exit 1; }
eval "$(grep '^export ' "$WORK/start.out")"       # the line start prints to paste
T0=$(date +%s.%N)
ID=$(ray job submit --no-wait --working-dir . -- python -m jobs.evaluate --replicas 2 \
    --task arc_easy --max_samples 40 --max_new_tokens 256 --temperature 0 --output "$OUT" "$@" \
    2>&1 | grep -o "raysubmit_[A-Za-z0-9]*" | head -1)
echo "job $ID: --replicas 2 --task arc_easy --max_samples 40 --max_new_tokens 256 --temperature 0 $*"
first=""
while :; do
    el=$(echo "$(date +%s.%N) - $T0" | bc)
    logs=$(ray job logs "$ID" 2>/dev/null)
    if [ -z "$first" ] && echo "$logs" | grep -qE "^progress [1-9][0-9]*/"; then
        first=$el
        printf "first progress with done > 0: %.0f s after the submit\n  %s\n" "$el" \
            "$(echo "$logs" | grep -E '^progress [1-9]' | head -1)"
    fi
    (( $(echo "$el >= $STOP_AFTER" | bc) )) && break
    sleep 2
done
[ -n "$first" ] || echo "first progress with done > 0: none within $STOP_AFTER s"
echo "last progress line before the stop:"
echo "  $(ray job logs "$ID" 2>/dev/null | grep '^progress' | tail -1)"
T_STOP=$(date +%s.%N)
ray job stop "$ID" >/dev/null 2>&1
sleep 5
python - "$OUT" "$LATENTMAS_FINISHED_LOG" "$T_STOP" <<'PY'
import pathlib, sys
import pyarrow.parquet as pq
out, audit, t_stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), float(sys.argv[3])
ids = [i for f in sorted((out / "parts").glob("part-*.parquet"))
       for i in pq.read_table(f).column("id").to_pylist()]
print(f"after `ray job stop`: {len(ids)} rows on disk ({len(set(ids))} distinct samples); "
      "a resubmit resumes from them")
lines = [ln.split() for ln in audit.read_text().splitlines() if ln.strip()]
before = {i for t, i in lines if float(t) < t_stop}
lost = sorted(before - set(ids))
print(f"finished on the replicas before the stop: {len(before)} samples "
      f"({len(lines)} by the time they were killed); finished and not on disk: {len(lost)}"
      + (f" ({', '.join(lost[:8])})" if lost else ""))
PY
python cluster/local_cluster.py stop --state-dir "$STATE" >/dev/null
rm -rf "$WORK"
