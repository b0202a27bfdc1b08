"""Soak: one Predictor shared by many threads for a long time, and `edgeft predict --input` on a
file of a million lines. Nothing may differ, fail or grow.

    python benchmarks/soak.py runs/arm64/bundle                     # the full soak: 8 x 10,000 + 1,000,000 lines
    python benchmarks/soak.py BUNDLE --per-thread 500 --lines 50000  # a quicker one

Part 1, threads. The reference: every sentence of a pool of real SST-2 dev sentences predicted
once, sequentially. Then ``--threads`` threads share one Predictor and each makes
``--per-thread`` predictions of one sentence per call (batch 1, the serving shape), walking the
pool from its own offset; every result is compared with the reference — label, score and every
probability, exactly. RSS (resident memory of this process, /proc/self/statm) is sampled at 20 Hz;
growth = (RSS at the end − RSS once the first 10 % of the predictions are done) / the latter.

Part 2, a stream. An ``--lines``-line JSONL file of real sentences (the SST-2 training sample,
cycled) goes through ``edgeft predict BUNDLE --input FILE --output OUT`` in a child process whose
RSS (/proc/PID/status VmRSS) is sampled every 0.1 s, with the number of output lines written so
far. Reported: RSS when 10 % of the lines are done, at the end, the peak, throughput, and that the
output has one row per line, in order.

Prints a table and writes benchmarks/results/soak.json (or --out). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgeft.writable import write_json

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "edgeft" / "samples"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process, MB (Linux /proc)."""
    if pid == "self":
        return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 1e6
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def sentences(name: str) -> list[str]:
    return [json.loads(line)["text"] for line in (SAMPLES / name).read_text(encoding="utf-8").splitlines()]


def as_tuple(prediction) -> tuple:
    """Everything a prediction says, comparable with == (label, score, every probability, truncated)."""
    d = prediction.to_dict()
    return tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else repr(v)) for k, v in d.items()))


def soak_threads(bundle: str | Path, threads: int = 8, per_thread: int = 10_000, pool: list[str] | None = None,
                 progress=print) -> dict:
    """Part 1: ``threads`` × ``per_thread`` batch-1 predictions on one Predictor vs the sequential reference."""
    from edgeft.runtime.predictor import Predictor

    pool = pool or sentences("sst2_test.jsonl")
    predictor = Predictor.load(bundle, threads=1)  # one intra-op thread per call: the threads are the parallelism
    t0 = time.perf_counter()
    reference = [as_tuple(predictor.predict(text)[0]) for text in pool]
    sequential_s = time.perf_counter() - t0
    total = threads * per_thread
    done = [0] * threads
    mismatches, errors, samples = [], [], []  # samples: (predictions done, RSS MB)
    stop = threading.Event()

    def monitor():
        while not stop.wait(0.05):
            samples.append((sum(done), rss_mb()))

    def work(k: int):
        try:
            for n in range(per_thread):
                i = (k * 997 + n) % len(pool)  # each thread walks the pool from its own offset
                got = as_tuple(predictor.predict(pool[i])[0])
                if got != reference[i] and len(mismatches) < 10:
                    mismatches.append({"thread": k, "text": pool[i], "got": got, "want": reference[i]})
                done[k] += 1
        except Exception as e:  # counted, not raised: the soak reports every failure
            errors.append(f"thread {k}: {type(e).__name__}: {e}")

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        while w.is_alive():
            w.join(10)
            progress(f"  threads: {sum(done):,}/{total:,} predictions, RSS {rss_mb():.1f} MB")
    seconds = time.perf_counter() - t0
    stop.set()
    watcher.join()
    samples.append((sum(done), rss_mb()))
    warm = next(rss for n, rss in samples if n >= total // 10)  # after the first 10 % of the predictions
    end = samples[-1][1]
    return {
        "bundle": str(bundle), "threads": threads, "per_thread": per_thread, "predictions": sum(done),
        "pool": len(pool), "sequential_reference_s": round(sequential_s, 2), "seconds": round(seconds, 2),
        "predictions_per_s": round(sum(done) / seconds, 1), "identical": not mismatches and sum(done) == total,
        "mismatches": len(mismatches), "mismatch_examples": mismatches[:3], "errors": errors,
        "rss_mb": {"after_warmup": round(warm, 1), "end": round(end, 1), "peak": round(max(r for _, r in samples), 1)},
        "rss_growth_pct": round(100 * (end - warm) / warm, 2),
    }


def soak_stream(bundle: str | Path, lines: int = 1_000_000, work: Path | None = None, progress=print) -> dict:
    """Part 2: `edgeft predict --input` on a ``lines``-line file in a child, its RSS sampled."""
    work = Path(work or tempfile.mkdtemp(prefix="edgeft-soak-"))
    source, out = work / "input.jsonl", work / "predictions.jsonl"
    pool = sentences("sst2_train.jsonl")
    with open(source, "w", encoding="utf-8") as f:
        for n in range(lines):
            f.write(json.dumps({"text": pool[n % len(pool)]}) + "\n")
    cmd = [sys.executable, "-m", "edgeft", "predict", str(bundle), "--input", str(source), "--output", str(out)]
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []  # (output lines so far, RSS MB)
    last = 0.0
    while child.poll() is None:
        try:
            written, rss = _count_lines(out), rss_mb(child.pid)
            if rss > 0:  # 0: the child has just exited (a zombie has no VmRSS)
                samples.append((written, rss))
        except (FileNotFoundError, ProcessLookupError):
            pass
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            progress(f"  stream: {samples[-1][0] if samples else 0:,}/{lines:,} lines, "
                     f"RSS {samples[-1][1] if samples else 0:.1f} MB")
        time.sleep(0.1)
    seconds = time.perf_counter() - t0
    rows = ok = 0
    with open(out, encoding="utf-8") as f:
        for rows, line in enumerate(f, 1):
            ok += json.loads(line)["line"] == rows
    at_10 = next((rss for n, rss in samples if n >= lines // 10), None)
    late = [rss for n, rss in samples if n >= lines * 9 // 10] or [samples[-1][1]]
    result = {
        "bundle": str(bundle), "lines": lines, "input_mb": round(source.stat().st_size / 1e6, 1),
        "returncode": child.returncode, "output_rows": rows, "in_order": ok == rows == lines,
        "seconds": round(seconds, 1), "lines_per_s": round(lines / seconds, 1),
        "rss_mb": {"at_10pct": round(at_10, 1) if at_10 else None, "at_90pct_plus": round(max(late), 1),
                   "peak": round(max(r for _, r in samples), 1)},
        # the curve: RSS when 10 %, 20 %, … of the lines were written
        "rss_mb_by_progress": {f"{p}%": round(next((r for n, r in samples if n >= lines * p // 100), samples[-1][1]), 1)
                               for p in range(10, 101, 10)},
    }
    result["rss_growth_pct"] = round(100 * (max(late) - at_10) / at_10, 2) if at_10 else None
    source.unlink()
    out.unlink()
    return result


def _count_lines(path: Path) -> int:
    """Lines written so far (the file grows while we read it; 1 MiB chunks keep this cheap)."""
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def render(report: dict) -> str:
    t, s = report["threads"], report["stream"]
    rows = [
        ("threads × predictions", f"{t['threads']} × {t['per_thread']:,} = {t['predictions']:,} (batch 1)"),
        ("identical to sequential", f"{'yes' if t['identical'] else 'NO'} ({t['mismatches']} mismatches, "
                                    f"{len(t['errors'])} errors)"),
        ("throughput", f"{t['predictions_per_s']:,.0f} predictions/s over {t['seconds']:.0f} s"),
        ("RSS after warm-up → end", f"{t['rss_mb']['after_warmup']} → {t['rss_mb']['end']} MB "
                                    f"({t['rss_growth_pct']:+.2f} %), peak {t['rss_mb']['peak']} MB"),
    ]
    if s:
        rows += [
            ("predict --input", f"{s['lines']:,} lines ({s['input_mb']} MB), exit {s['returncode']}, "
                                f"{s['output_rows']:,} rows, in order: {'yes' if s['in_order'] else 'NO'}"),
            ("stream throughput", f"{s['lines_per_s']:,.0f} lines/s over {s['seconds']:.0f} s"),
            ("stream RSS at 10 % → last 10 %", f"{s['rss_mb']['at_10pct']} → {s['rss_mb']['at_90pct_plus']} MB "
                                               f"({s['rss_growth_pct']:+.2f} %), peak {s['rss_mb']['peak']} MB"),
        ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=1_000_000, help="0: skip the stream part")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak.json")
    args = parser.parse_args()
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    from edgeft.runtime.bench import machine_info

    load_before = os.getloadavg()
    say(f"part 1: {args.threads} threads × {args.per_thread:,} predictions on {args.bundle}")
    threads = soak_threads(args.bundle, args.threads, args.per_thread, progress=say)
    say(f"part 2: edgeft predict --input, {args.lines:,} lines")
    stream = soak_stream(args.bundle, args.lines, progress=say) if args.lines else None
    report = {"machine": {**machine_info(), "load_average_before": load_before, "load_average_after": os.getloadavg()},
              "threads": threads, "stream": stream}
    write_json(args.out, report)
    print(render(report))
    print(f"→ {args.out}")


if __name__ == "__main__":
    main()
