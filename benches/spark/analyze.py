"""Verdicts and the Markdown table of the Spark-vs-Brooklet comparison.

    python3 analyze.py run RUN_DIR     # one run: reads its logs, writes RUN_DIR/summary.txt
    python3 analyze.py table RESULTS   # all runs under RESULTS: prints the Markdown report

A run directory (made by compare.sh) holds:
  meta.txt     engine=, rate=, duration_s=, warmup_s=, connect_ms=,
               t1_ms=, cpu1_s= (warm-up end), t2_ms=, cpu2_s= (end of sending),
               cpu_end_s= (whole run, startup included)
  linegen.log  the generator's events (see linegen.py)
  batches.log  one line per batch: Spark's `batch time=.. records=..
               scheduling_delay_ms=.. processing_ms=..` (wordcount.py) or
               Brooklet's `progress: query=q1 time=.. rows_in=..
               processing_ms=.. scheduling_delay_ms=..` (--progress)

A rate "keeps up" when, after the warm-up, every batch's scheduling delay
is under one batch interval (1000 ms), the engine processed at least 99% of
the lines sent (all batches' records over the whole run, which a drain
period after sending lets finish), and the generator itself sent at least
99% of RATE x DURATION (a receiver that stops reading pushes back through
TCP, so a slow engine can show no delay yet take fewer lines).
"""

import datetime
import os
import re
import sys

BATCH_MS = 1000
NEARLY = 0.99
PAIR = re.compile(r"(\w+)=(-?[\w.]+)")


def pairs(line):
    return dict(PAIR.findall(line))


def read_kv(path):
    """{key: value} of a file of `key=value` lines (a value may hold spaces)."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                key, eq, value = line.rstrip("\n").partition("=")
                if eq:
                    out[key.strip()] = value.strip()
    return out


def batches(path):
    """[(time_ms, records, scheduling_delay_ms, processing_ms)] of the batch log."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, errors="replace") as f:
        for line in f:
            if not (line.startswith("batch ") or line.startswith("progress: ")):
                continue
            p = pairs(line)
            records = p.get("records", p.get("rows_in"))
            if "time" not in p or records is None:
                continue
            rows.append((int(p["time"]), int(records), int(p["scheduling_delay_ms"]), int(p["processing_ms"])))
    return rows


def analyze_run(run_dir):
    meta = read_kv(os.path.join(run_dir, "meta.txt"))
    gen = {}
    with open(os.path.join(run_dir, "linegen.log")) as f:
        for line in f:
            if line.startswith("done "):
                gen = pairs(line)
    rows = batches(os.path.join(run_dir, "batches.log"))
    rate = int(meta["rate"])
    out = {"engine": meta["engine"], "rate": rate}
    if not gen or "connect_ms" not in meta:
        out["verdict"] = "failed: the engine did not connect (see logs)"
        return out
    if not rows or not all(k in meta for k in ("t1_ms", "cpu1_s", "t2_ms", "cpu2_s")):
        out["verdict"] = "failed: the engine died or logged no batch (see logs)"
        return out
    sent, target = int(gen["sent"]), int(gen["target"])
    warm_end = int(meta["connect_ms"]) + int(float(meta["warmup_s"]) * 1000)
    steady = [r for r in rows if r[0] >= warm_end]
    total_records = sum(r[1] for r in rows)
    t1, t2 = int(meta["t1_ms"]), int(meta["t2_ms"])
    window_records = sum(r[1] for r in rows if t1 < r[0] <= t2)
    # Processing times while lines arrive (the drain period's batches are empty).
    sending = [r for r in steady if r[0] <= t2] or steady
    cpu = float(meta["cpu2_s"]) - float(meta["cpu1_s"])
    out.update(
        target=target,
        sent=sent,
        processed=total_records,
        processed_after_warmup=sum(r[1] for r in steady),
        batches_after_warmup=len(steady),
        max_sched_ms=max((r[2] for r in steady), default=-1),
        mean_proc_ms=round(sum(r[3] for r in sending) / len(sending)) if sending else -1,
        max_proc_ms=max((r[3] for r in sending), default=-1),
        cpu_steady_s=round(cpu, 2),
        steady_s=round((t2 - t1) / 1000, 1),
        steady_lines=window_records,
        cpu_s_per_mline=round(cpu / (window_records / 1e6), 2) if window_records else -1,
        cpu_total_s=meta.get("cpu_end_s", "?"),
    )
    reasons = []
    if not steady:
        reasons.append("no batch after warm-up")
    elif out["max_sched_ms"] >= BATCH_MS:
        reasons.append(f"delay {out['max_sched_ms']} ms")
    if sent < NEARLY * target:
        reasons.append(f"pushed back: {100 * sent / target:.0f}% sent")
    if total_records < NEARLY * sent:
        reasons.append(f"{100 * total_records / max(sent, 1):.0f}% processed")
    out["verdict"] = "keeps up" if not reasons else "falls behind (" + "; ".join(reasons) + ")"
    return out


def write_summary(run_dir):
    s = analyze_run(run_dir)
    with open(os.path.join(run_dir, "summary.txt"), "w") as f:
        for k, v in s.items():
            f.write(f"{k}={v}\n")
    return s


def read_summary(run_dir):
    return read_kv(os.path.join(run_dir, "summary.txt"))


def fmt(n):
    try:
        return f"{int(n):,}".replace(",", " ")
    except ValueError:
        return n


def table(results):
    runs = []
    for name in sorted(os.listdir(results)):
        path = os.path.join(results, name)
        if os.path.exists(os.path.join(path, "summary.txt")):
            runs.append(read_summary(path))
    meta = read_kv(os.path.join(results, "settings.txt"))
    for skipped in meta.get("skipped", "").split():
        engine, _, rate = skipped.partition(":")
        runs.append({"engine": engine, "rate": rate, "verdict": "not run (a lower rate fell behind)"})
    order = meta.get("engines", "").split()
    rank = {e: i for i, e in enumerate(order)}
    runs.sort(key=lambda s: (rank.get(s["engine"], len(order)), s["engine"], int(s["rate"])))
    lines = [
        f"## Spark Streaming vs Brooklet: socket word count — {datetime.date.today()}",
        "",
        f"`benches/spark/compare.sh {meta.get('rates', '')}` (not in CI; commit {meta.get('commit', '?')}): "
        f"the same generator (`linegen.py`, {meta.get('words', 10)} words a line from "
        f"{meta.get('vocab', 1000)}, Zipf) feeds each engine over a local socket for "
        f"{meta.get('duration', '?')} s per rate; the first {meta.get('warmup', '?')} s are warm-up. "
        "Job: split on spaces, count per word over a 10 s window sliding every 1 s, 1 s batches. "
        f"Spark {meta.get('spark', '?')} on Java {meta.get('java', '?')} runs it as PySpark DStreams on "
        "`local[2]` (one core for the socket receiver): `spark` with "
        "`reduceByKeyAndWindow(add, sub, 10, 1)` (incremental, checkpointed), `spark-plain` with "
        "`reduceByKeyAndWindow(add, None, 10, 1)`; `brooklet` is the release build "
        f"{'(' + meta['brooklet'] + ') ' if meta.get('brooklet', '-') != '-' else ''}"
        "running `wordcount.sql`, output to /dev/null. "
        f"{meta.get('cores', '?')} cores, shared with the generator.",
        "",
        "A rate keeps up when every batch after warm-up starts less than one batch interval late "
        "(scheduling delay < 1000 ms), the engine processed ≥ 99% of the lines sent, and the generator "
        "sent ≥ 99% of its target (a receiver that stops reading pushes back through TCP). "
        "CPU is user + system of the engine's whole process tree (for Spark: Python driver, JVM and "
        "Python workers) between the end of warm-up and the end of sending, per million lines processed "
        "in the batches of that interval.",
        "",
        "| engine | rate (lines/s) | sent | processed | max scheduling delay (ms) | processing mean / max (ms) | CPU s (steady) | CPU s per M lines | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in runs:
        if "sent" not in s:
            lines.append(f"| {s['engine']} | {fmt(s['rate'])} | | | | | | | {s['verdict']} |")
            continue
        lines.append(
            f"| {s['engine']} | {fmt(s['rate'])} | {fmt(s['sent'])} | {fmt(s['processed'])} | "
            f"{s['max_sched_ms']} | {s['mean_proc_ms']} / {s['max_proc_ms']} | {s['cpu_steady_s']} | "
            f"{s['cpu_s_per_mline']} | {s['verdict']} |"
        )
    lines += ["", "| engine | highest rate that keeps up (lines/s) | CPU s per million lines there |", "|---|---|---|"]
    for engine in dict.fromkeys(s["engine"] for s in runs):
        ok = [s for s in runs if s["engine"] == engine and s["verdict"] == "keeps up"]
        if ok:
            best = max(ok, key=lambda s: int(s["rate"]))
            lines.append(f"| {engine} | {fmt(best['rate'])} | {best['cpu_s_per_mline']} |")
        else:
            lines.append(f"| {engine} | none of the rates tried | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("run", "table"):
        sys.exit(__doc__)
    if sys.argv[1] == "run":
        s = write_summary(sys.argv[2])
        print(" ".join(f"{k}={v}" for k, v in s.items()))
    else:
        sys.stdout.write(table(sys.argv[2]))
