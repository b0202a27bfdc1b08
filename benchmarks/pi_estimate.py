"""What a Raspberry Pi 4 or 5 should do with the MiniLM INT8 bundle: an ESTIMATE, not a measurement.

    python benchmarks/pi_estimate.py > benchmarks/pi_estimate.md
    python benchmarks/pi_estimate.py --layers 3                      # the distilled 3-layer student
    python benchmarks/pi_estimate.py --tokenizer runs/arm64/bundle/tokenizer.json   # measure the length

Nothing here runs on a Pi, and emulated arm64 (tests/test_arm64.py) says nothing about speed: its
compute runs ~300x slower than native. The estimate is arithmetic, with every input stated:

* work: multiply-accumulates (MACs) of the transformer blocks per sentence, at the mean length of the
  shipped SST-2 test sentences (the formula of edgeft.compress.distill.flops_per_token, halved:
  projections 4h², feed-forward 2hf, attention 2sh per token and layer; embeddings and the
  classifier head are left out). In the INT8 bundle the weight matrices run as int8 GEMMs.
* peak: int8 MACs per cycle and core, from the cores' published instruction throughput, times the clock.
* efficiency: the fraction of peak a whole batch-1 forward reaches (small GEMMs, quantize/dequantize,
  LayerNorm, GELU, softmax in float). ASSUMED 25-50 %; nobody measured it on a Pi for this model.
* threads: at batch 1 the GEMMs have only ~25 rows; 4 threads are ASSUMED to give 2-3x, not 4x.

A Pi owner replaces the estimate with a measurement: `pi/bench.sh ~/bundle` (see the output's end).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "edgeft" / "samples" / "sst2_test.jsonl"
SST2_MEAN_TOKENS = 25.47  # all-MiniLM-L6-v2's tokenizer on the 872 shipped SST-2 test sentences, [CLS]/[SEP] included
EFFICIENCY = (0.25, 0.50)  # assumed fraction of peak, whole forward at batch 1
THREAD_SCALING = (2.0, 3.0)  # assumed speed-up of 4 threads over 1 at batch 1

# (device, core, GHz, int8 MACs per cycle and core, why)
DEVICES = [
    ("Raspberry Pi 4 (BCM2711)", "Cortex-A72", 1.8, 8,
     "Armv8.0, no dot product: int8 GEMM widens with UMULL/UMULL2 (8 products each), and the A72 "
     "issues ASIMD integer multiplies on one of its two ASIMD pipes (Cortex-A72 Software Optimization "
     "Guide): 8 MACs/cycle. Boards from before 2020 run at 1.5 GHz: add 20 %."),
    ("Raspberry Pi 5 (BCM2712)", "Cortex-A76", 2.4, 32,
     "Armv8.2 dot product: one SDOT/UDOT does 16 int8 MACs into 32-bit lanes, and the A76 issues it on "
     "both ASIMD pipes (Cortex-A76 Software Optimization Guide): 32 MACs/cycle."),
]


def macs_per_sentence(layers: int, hidden: int, ffn: int, tokens: float) -> float:
    """Multiply-accumulates of the transformer blocks for one sentence of ``tokens`` tokens."""
    per_token = layers * (4 * hidden * hidden + 2 * hidden * ffn + 2 * tokens * hidden)
    return per_token * tokens


def mean_tokens(tokenizer: Path | None) -> float:
    if tokenizer is None:
        return SST2_MEAN_TOKENS
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    tok.no_padding()
    texts = [json.loads(line)["text"] for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return statistics.mean(len(e.ids) for e in tok.encode_batch(texts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=6, help="6: all-MiniLM-L6-v2; 3: the distilled student")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--tokenizer", type=Path, help="tokenizer.json: measure the mean SST-2 length with it")
    args = ap.parse_args()

    tokens = mean_tokens(args.tokenizer)
    macs = macs_per_sentence(args.layers, args.hidden, args.ffn, tokens)
    print(f"""# Raspberry Pi 4 / 5: expected latency of the MiniLM INT8 bundle — an estimate, not a measurement

Made by `python benchmarks/pi_estimate.py` from the model's arithmetic and the ARM cores' published
instruction throughput. **Nothing here ran on a Raspberry Pi**; the efficiency and thread scaling are
assumptions (stated below). Replace it with a measurement on your Pi, as in "How to measure" at the end.

Model: {args.layers}-layer MiniLM (hidden {args.hidden}, feed-forward {args.ffn}), INT8, batch 1, a real
SST-2 sentence of {tokens:.1f} tokens on average: **{macs / 1e6:.0f} M multiply-accumulates** per sentence
(transformer blocks only).

| device | core, clock | int8 MACs / cycle / core | peak per core | estimated p50, 1 thread | estimated p50, 4 threads |
|---|---|---:|---:|---:|---:|""")
    for device, core, ghz, per_cycle, _ in DEVICES:
        peak = per_cycle * ghz * 1e9  # MAC/s, one core
        slow, fast = (macs / (peak * e) * 1e3 for e in EFFICIENCY)  # ms
        print(f"| {device} | {core}, {ghz} GHz | {per_cycle} | {peak / 1e9:.1f} GMAC/s | {fast:.0f}–{slow:.0f} ms "
              f"| {fast / THREAD_SCALING[1]:.0f}–{slow / THREAD_SCALING[0]:.0f} ms |")
    print("""
Where the numbers come from:
""")
    for device, core, _, per_cycle, why in DEVICES:
        print(f"- **{core}** ({device}): {why}")
    print(f"""- **Efficiency {EFFICIENCY[0]:.0%}–{EFFICIENCY[1]:.0%} of peak (assumed).** A batch-1 forward is small GEMMs
  ({tokens:.0f} rows) plus dynamic quantization of every activation, LayerNorm, GELU and softmax in float.
  For scale: on this project's build machine (2-vCPU Xeon VM with AVX-512 VNNI) the INT8 bundle's
  measured p50 was 1.83 ms at 1 thread (README, "The main command"), i.e. about
  {macs / 1.83e-3 / 1e9:.0f} GMAC/s achieved on one x86 core; its peak is not known (a VM's clock).
- **4 threads give {THREAD_SCALING[0]:.0f}–{THREAD_SCALING[1]:.0f}x (assumed)**, not 4x: the matrices are split four ways but
  each piece is small, and the float parts between GEMMs synchronise the threads.
- Not in the estimate: thermal throttling (a Pi 4 without a heatsink slows down within minutes at full
  load; `pi/bench.sh` records the firmware's throttling flags), Python start-up and model loading
  (the cold start), and memory bandwidth.

## How to measure (replaces this estimate)

On the Pi (Raspberry Pi OS 64-bit), with the bundle copied to `~/bundle`:

```bash
bash pi/install.sh                 # the runtime only, in ~/edgeft-venv
pi/bench.sh ~/bundle results/pi    # batch 1, real sentences, 1-4 threads → results/pi/bench.json + bench.md
```

Then, anywhere, put it next to the build machine's run of the same bundle:

```bash
edgeft bench runs/arm64/bundle --threads 1,2 --batch 1 --seq-len real --json laptop.json
edgeft bench --compare results/pi/bench.json laptop.json --markdown pi-vs-laptop.md
```""")


if __name__ == "__main__":
    main()
