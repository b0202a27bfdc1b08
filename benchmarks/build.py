"""`edgeft build` end to end: the README's main command's wall time, and what it chose, on SST-2 (the
shipped sample) and BANKING77.

    python benchmarks/build.py                              # both (~25 min on 2 cores)
    python benchmarks/build.py --only sst2                  # the README main command alone
    python benchmarks/build.py --only fast                  # the --fast smoke run
    python benchmarks/build.py --datasets /path/to/datasets --only banking77

Each build runs as a user would run it (`edgeft build …` in a fresh process); the chosen variant's
accuracy, size and p50 come from the build's own report (every variant measured in one interleaved
run), so the ratios to FP32 are same-run ratios. Writes benchmarks/results/build.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cold_build import cold_build  # noqa: E402  (shared with benchmarks/build_lm.py)
DEFAULT_DATASETS = HERE.parent.parent / "shared" / "datasets"


def run_build(name: str, work: Path, *args: str) -> dict:
    report, wall, command = cold_build(name, work, *args)
    fp32 = report["variants"][0]
    chosen = next(v for v in report["variants"] if v["name"] == report["chosen"])
    return {"command": command, "wall_seconds": round(wall, 1), "chosen": report["chosen"],
            "why": report["why"], "metric": report["metric"], "fp32": fp32, "chosen_variant": chosen,
            "variants": report["variants"], "stage_seconds": report["stage_seconds"],
            "speedup_vs_fp32": fp32["latency"]["p50_ms"] / chosen["latency"]["p50_ms"],
            "size_ratio_vs_fp32": chosen["size_mb"] / fp32["size_mb"], "machine": report["machine"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_build"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "build.json")
    ap.add_argument("--only", default="sst2,banking77")
    args = ap.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name in args.only.split(","):
        if name == "sst2":  # the README's main command, exactly
            results[name] = run_build(name, args.work, "--target", "arm64")
        elif name == "fast":  # the smoke run (target: <= 3 minutes)
            results[name] = run_build(name, args.work, "--target", "arm64", "--fast")
        elif name == "banking77":
            b = args.datasets / "banking77"
            results[name] = run_build(name, args.work, "--recipe", str(HERE.parent / "recipes" / "banking77_rpi5.toml"),
                                      "--train", str(b / "train.jsonl"), "--test", str(b / "test.jsonl"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'build':<10} {'wall s':>7} {'chosen':<22} {'metric':>8} {'FP32':>8} {'drop pt':>8} "
          f"{'size MB':>8} {'p50 ms':>7} {'vs FP32':>8}")
    for name, r in results.items():
        c, f = r["chosen_variant"], r["fp32"]
        print(f"{name:<10} {r['wall_seconds']:>7.0f} {r['chosen']:<22} {100 * c['metric']:>8.2f} {100 * f['metric']:>8.2f} "
              f"{c['drop_pt']:>8.2f} {c['size_mb']:>8.1f} {c['latency']['p50_ms']:>7.2f} {r['speedup_vs_fp32']:>7.2f}x")


if __name__ == "__main__":
    main()
