"""`edgeft build --task text-generation` end to end: the default generative build's wall time and what it chose.

    python benchmarks/build_lm.py                  # edgeft build --task text-generation --target arm64 (~15 min)
    python benchmarks/build_lm.py --target rpi5

The embedded SmolLM2-135M-Instruct on the shipped sample (edgeft/samples/squad_answers_{train,test}.jsonl,
400 + 100 SQuAD answer-from-the-passage pairs), run as a user runs it (`edgeft build …` in a fresh
process, no cached stages). Every variant's perplexity, token F1 / EM, agreement with FP32 and decode
speed come from the build's own report (the speeds from one interleaved run), so ratios are same-run
ratios. Writes benchmarks/results/build_lm.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cold_build import cold_build  # noqa: E402  (shared with benchmarks/build.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="arm64")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_build_lm"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "build_lm.json")
    args = ap.parse_args()
    report, wall, command = cold_build(args.target, args.work, "--task", "text-generation", "--target", args.target)
    out = args.work / args.target
    fp32 = report["variants"][0]
    chosen = next(v for v in report["variants"] if v["name"] == report["chosen"])
    result = {"command": command, "wall_seconds": round(wall, 1), "chosen": report["chosen"],
              "why": report["why"], "budget_pt": report["budget_pt"], "pytorch_fp32": report["pytorch_fp32"],
              "variants": report["variants"], "bench_settings": report["bench_settings"],
              "stage_seconds": report["stage_seconds"],
              "decode_speedup_vs_fp32": chosen["bench"]["decode_tokens_per_s"] / fp32["bench"]["decode_tokens_per_s"],
              "size_ratio_vs_fp32": chosen["size_mb"] / fp32["size_mb"], "machine": report["machine"],
              "versions": report["versions"], "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    shutil.copyfile(out / "report.md", args.out.with_name(f"build_lm-{args.target}-report.md"))
    print(f"{wall / 60:.1f} min; chose {report['chosen']}: {report['why']}")
    for v in report["variants"]:
        print(f"  {v['name']:<5} {v['size_mb']:7.1f} MB  ppl {v['perplexity']:.3f}  F1 {100 * (v['f1'] or 0):.2f}  "
              f"agree {100 * v['agreement']:.0f}%  {v['bench']['decode_tokens_per_s']:.1f} tok/s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
