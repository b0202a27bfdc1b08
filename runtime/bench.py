"""``edgeft bench``: latency, throughput, memory and cold start of bundles (and the PyTorch model).

How the numbers are made, and why:
* Every model runs in its own worker process (``python -m edgeft.runtime.bench --worker …``),
  one per thread count, so its peak RSS (``ru_maxrss``) is its own and not the sum of all
  models, and an ONNX worker never imports torch (nor the PyTorch worker onnxruntime).
* Workers start one after another and each reports its load time and time-to-first-prediction
  (process start → first result, i.e. interpreter + imports + verification + session + one text)
  before the next one starts, so cold starts do not compete for the CPU.
* The timed runs are interleaved: ``--runs`` is split into rounds and each round asks every
  worker for its share, in rotating order. Noise from other load on the machine then hits all
  models alike and the ratios between them hold, even when the absolute figures wobble.
* Latency is the model call alone (``session.run`` / ``model(**inputs)``) on inputs tokenized
  beforehand, in ms of wall clock per batch after ``--warmup`` untimed runs. Tokenization is the
  same for every bundle of a model, so leaving it out makes the ratios about the model.
* ``real`` sequence length = real sentences (``--data`` or the shipped SST-2 sample), each batch
  padded only to its longest member; a number N = every sequence padded/truncated to N tokens.

The parent speaks to workers in JSON lines over stdin/stdout; a worker writes its protocol on a
private copy of stdout and sends everything else (library chatter) to stderr.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeft import errors

ROUNDS = 10  # the timed runs of each configuration are split into this many interleaved rounds
DISTINCT_BATCHES = 16  # inputs cycle through this many different batches (real sentences vary)
SAMPLE = ("edgeft", "samples/sst2_test.jsonl")  # package data: the GLUE SST-2 dev sentences
FALLBACK_TEXTS = ["the film is a delight from start to finish .", "a dull , lifeless and overlong mess .",
                  "I lost my card yesterday, can you block it?", "Meet me at the Eiffel Tower in Paris on Monday."]
ARM_CORES = {"0xd03": "Cortex-A53", "0xd05": "Cortex-A55", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd41": "Cortex-A78", "0xd40": "Neoverse-V1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd4f": "Neoverse-V2", "0xd81": "Cortex-A720"}
FALLBACK_PAIRS = [  # question answering without --data: SQuAD-like paragraphs
    ("Which team won Super Bowl 50?", "Super Bowl 50 was an American football game to determine the champion of the "
     "National Football League (NFL) for the 2015 season. The American Football Conference (AFC) champion Denver "
     "Broncos defeated the National Football Conference (NFC) champion Carolina Panthers 24–10 to earn their third "
     "Super Bowl title. The game was played on February 7, 2016, at Levi's Stadium in the San Francisco Bay Area at "
     "Santa Clara, California."),
    ("When was the University of Melbourne founded?", "Victoria includes eight public universities, with the oldest, "
     "the University of Melbourne, having been founded in 1853. The Melbourne Cricket Ground is the largest stadium "
     "in Australia, and the host of the 1956 Summer Olympics and the 2006 Commonwealth Games.")]
ISA_FLAGS = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|avx512\w*|avx_vnni\w*|amx\w*|asimd\w*|neon|fphp|i8mm|bf16|sve\w*)$")


@dataclass(frozen=True)
class ModelSpec:
    """One column of the benchmark: a bundle, or a PyTorch HF folder."""

    name: str  # shown in tables: the folder name, "(pytorch)" appended for HF folders
    kind: str  # "bundle" | "pytorch"
    path: str
    size_bytes: int  # model weights on disk: model.onnx, or the HF folder's *.safetensors/*.bin
    task: str = ""  # a bundle's task: question answering is timed on (question, context) pairs


def parse_list(text: str, flag: str, allow_real: bool = False) -> list:
    """'real,16,64' → ['real', 16, 64]; a ConfigError naming the flag otherwise."""
    out: list = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        if allow_real and item == "real":
            out.append("real")
        elif item.isdigit() and int(item) > 0:
            out.append(int(item))
        else:
            hint = "'real' or positive integers" if allow_real else "positive integers"
            raise errors.ConfigError(f"{flag}: {item!r} is not valid; give a comma-separated list of {hint}, e.g. "
                                     + ("real,16,64" if allow_real else "1,2"))
    if not out:
        raise errors.ConfigError(f"{flag} is empty")
    return list(dict.fromkeys(out))  # drop duplicates, keep order


def model_specs(bundles: list[Path], pytorch: Path | None) -> list[ModelSpec]:
    """Verify every bundle in this process (a tampered bundle fails here, before any worker starts)."""
    from edgeft.runtime.bundle import load_bundle

    specs = []
    for path in bundles:
        b = load_bundle(path)
        specs.append(ModelSpec(Path(path).name.removesuffix(".zip"), "bundle", str(path), b.sizes[b.manifest.model_file],
                               b.manifest.task))
    if pytorch is not None:
        import importlib.util

        for module in ("torch", "transformers"):
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                raise errors.MissingExtraError("bench --pytorch", "train", module)
        if not (Path(pytorch) / "config.json").is_file():
            raise errors.ModelError(f"--pytorch {pytorch}: not a Hugging Face model folder (no config.json)")
        weights = [p for p in Path(pytorch).iterdir() if p.suffix in (".safetensors", ".bin")]
        specs.append(ModelSpec(f"{Path(pytorch).name} (pytorch)", "pytorch", str(pytorch), sum(p.stat().st_size for p in weights)))
    return unique_names(specs)


def unique_names(specs: list[ModelSpec]) -> list[ModelSpec]:
    """Rows are keyed by name: 'runs/a/bundle' and 'runs/b/bundle' become 'a/bundle' and 'b/bundle'."""
    from dataclasses import replace

    names = [s.name for s in specs]
    if len(set(names)) == len(names):
        return specs
    longer = [f"{Path(s.path).parent.name}/{s.name}" for s in specs]
    if len(set(longer)) != len(longer):
        longer = [f"{n} #{i + 1}" for i, n in enumerate(names)]
    return [replace(s, name=n) for s, n in zip(specs, longer)]


def run_bench(specs: list[ModelSpec], threads: list[int], batches: list[int], seq_lens: list, runs: int = 300,
              warmup: int = 30, data: Path | None = None, max_length: int = 128,
              progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Benchmark every model on every (threads, batch, seq_len) configuration.

    Args:
        specs: from ``model_specs``; the first is the reference of the ratios.
        seq_lens: "real" and/or token counts; counts over ``max_length`` are skipped (noted).
        max_length: truncation of real sentences (the first bundle's max_length).
        progress: called with a short line per step (the CLI prints it to stderr).
    Returns:
        the report: {"machine", "versions", "settings", "models", "rows", "skipped"} (see README).
    """
    if runs < 1 or warmup < 0:
        raise errors.ConfigError(f"--runs must be ≥ 1 and --warmup ≥ 0 (got {runs}, {warmup})")
    texts = sample_texts(data, qa=any(s.task == "question-answering" for s in specs))
    skipped = [s for s in seq_lens if s != "real" and s > max_length]
    configs = [(b, s) for b in batches for s in seq_lens if s not in skipped]
    models = [{"name": s.name, "kind": s.kind, "path": s.path, "size_bytes": s.size_bytes, "cold": {}} for s in specs]
    rows = []
    for t in threads:
        workers = []
        try:
            for spec, model in zip(specs, models):  # one at a time: cold starts must not overlap
                progress(f"starting {spec.name} (threads={t})")
                w = Worker(spec, t, texts, max_length)
                workers.append(w)
                model["cold"][str(t)] = w.ready
            for batch, seq in configs:
                progress(f"threads={t} batch={batch} seq={seq}")
                for w in workers:
                    w.ask({"cmd": "config", "batch": batch, "seq": seq, "warmup": warmup})
                times: list[list[float]] = [[] for _ in workers]
                for r in range(ROUNDS):
                    share = runs // ROUNDS + (1 if r < runs % ROUNDS else 0)
                    if share == 0:
                        continue
                    for k in range(len(workers)):  # rotate who goes first, against position bias
                        i = (k + r) % len(workers)
                        times[i] += workers[i].ask({"cmd": "run", "n": share})["times_ms"]
                for spec, ms in zip(specs, times):
                    rows.append({"model": spec.name, "threads": t, "batch": batch, "seq_len": seq, **summarize(ms, batch)})
            for model, w in zip(models, workers):
                model["cold"][str(t)]["peak_rss_mb"] = w.ask({"cmd": "exit"})["peak_rss_mb"]
        finally:
            for w in workers:
                w.close()
    versions = {pkg: _version(pkg) for pkg in ("edgeft", "numpy", "onnxruntime", "tokenizers")}
    if any(s.kind == "pytorch" for s in specs):
        versions |= {pkg: _version(pkg) for pkg in ("torch", "transformers")}
    return {"machine": machine_info(), "versions": versions,
            "settings": {"threads": threads, "batch": batches, "seq_len": seq_lens, "runs": runs, "warmup": warmup,
                         "rounds": ROUNDS, "data": str(data) if data else "built-in sample", "max_length": max_length},
            "models": models, "rows": rows, "skipped": [f"seq_len {s} > max_length {max_length}" for s in skipped]}


def summarize(ms: list[float], batch: int) -> dict[str, float]:
    """Percentiles (ms per batch) and throughput (sequences/s) of one configuration's runs."""
    import numpy as np

    a = np.asarray(ms)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(a.mean()),
            "throughput": float(batch * 1000 / a.mean()), "runs": len(ms)}


class Worker:
    """The parent's handle on one worker process (a plain holder of a Popen, not an abstraction)."""

    def __init__(self, spec: ModelSpec, threads: int, texts: list[str], max_length: int):
        self.spec = spec
        self.log = tempfile.TemporaryFile()  # the worker's stderr; read back only on failure
        args = {"kind": spec.kind, "path": spec.path, "threads": threads, "texts": texts, "max_length": max_length,
                "t0": time.time()}  # t0: wall clock just before the process exists (cold start)
        self.proc = subprocess.Popen([sys.executable, "-m", "edgeft.runtime.bench", "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.ready = self.ask(args)

    def ask(self, message: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.proc.wait()
            self.log.seek(0)
            tail = self.log.read().decode("utf-8", "replace").strip().splitlines()[-8:]
            raise errors.EdgeftError(f"bench worker for {self.spec.name} exited with code {self.proc.returncode}:\n"
                                     + "\n".join(tail))
        reply = json.loads(line)
        if "error" in reply:  # a typed error raised in the worker: re-raise it here as the same type
            raise getattr(errors, reply.get("type", ""), errors.EdgeftError)(reply["error"])
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def sample_texts(data: Path | None, qa: bool = False) -> list:
    """Sentences for the 'real' length: --data (.jsonl 'text'/'tokens', .txt lines, .csv/.tsv 'text'),
    else the shipped SST-2 test sample, else a few built-in sentences. For question answering,
    (question, context) pairs: of a SQuAD --data file, else a few built-in ones (each is timed as
    one model call on its first window, question + context ≤ max_length tokens)."""
    import csv

    from importlib.resources import files

    if qa:
        from edgeft.data import read_dataset

        return [ex.pair for ex in read_dataset(data, task="question-answering").examples[:2000]] if data \
            else FALLBACK_PAIRS

    path = Path(data) if data else Path(str(files(SAMPLE[0]).joinpath(SAMPLE[1])))
    if not path.is_file():
        if data:
            raise errors.DataError(f"--data {data}: no such file")
        return FALLBACK_TEXTS
    texts = []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        if path.suffix in (".csv", ".tsv"):
            texts = [row.get("text", "") for row in csv.DictReader(f, delimiter="," if path.suffix == ".csv" else "\t")]
        elif path.suffix in (".jsonl", ".json"):
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise errors.DataError(f"{path}:{n}: not JSON ({e})") from None
                    texts.append(row.get("text") or " ".join(row.get("tokens", [])) if isinstance(row, dict) else "")
        else:
            texts = [line.rstrip("\n") for line in f]
    texts = [t for t in texts if t and t.strip()][:2000]  # 2,000 sentences are plenty for timing
    if not texts:
        raise errors.DataError(f"{path}: no text found (jsonl rows need a 'text' field; csv/tsv a 'text' column)")
    return texts


def machine_info(cpuinfo: str = "/proc/cpuinfo", board_file: str = "/proc/device-tree/model") -> dict[str, Any]:
    """CPU model, board (Raspberry Pi and other device-tree boards), ISA flags that matter for INT8
    kernels, cores, OS and Python. (The paths are parameters for tests.)"""
    from edgeft.runtime.session import physical_cores

    found, flags = {}, set()
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key in ("flags", "features"):
                flags |= {f for f in value.split() if ISA_FLAGS.match(f)}
            elif value:
                found.setdefault(key, value)  # the first processor's values
    except OSError:
        pass
    try:  # "Raspberry Pi 5 Model B Rev 1.0" on a Pi, whatever its kernel prints in /proc/cpuinfo
        board = Path(board_file).read_text().strip("\x00\n ")
    except (OSError, UnicodeDecodeError):  # a Pi kernel also prints "Model: …"; x86 a numeric model number
        board = "" if found.get("model", "0").isdigit() else found["model"]
    # ARM kernels print no "model name"; the core is in "CPU part" (0xd08 = Cortex-A72, as in a Pi 4)
    core = ARM_CORES.get(found.get("cpu part", ""), "")
    cpu = (found.get("model name") or found.get("cpu model") or core or found.get("hardware")
           or platform.processor() or platform.machine())
    return {"cpu": cpu, "board": board, "isa": sorted(flags), "logical_cores": os.cpu_count(),
            "physical_cores": physical_cores(), "arch": platform.machine(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def table(header: list[str], rows: list[list], markdown: bool = False) -> str:
    """Aligned columns (the first left, the others right), or a GitHub markdown table."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    if markdown:
        rule = "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"
        return "\n".join(["| " + " | ".join(cells[0]) + " |", rule, *("| " + " | ".join(r) + " |" for r in cells[1:])])
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in cells)


def describe_machine(report: dict[str, Any]) -> str:
    """One line: board, CPU, arch, cores and the onnxruntime that produced the numbers."""
    m = report["machine"]
    board = f"{m['board']}, " if m.get("board") else ""
    return (f"{board}{m['cpu']} ({m['arch']}, {m['logical_cores']} cores), "
            f"onnxruntime {report.get('versions', {}).get('onnxruntime', '?')}, python {m.get('python', '?')}")


def render(report: dict[str, Any], markdown: bool = False) -> str:
    """The tables: one line per model and configuration ('speedup' = first model's p50 / this p50),
    then load time, cold start and peak memory. ``markdown``: a report to paste into an issue or README."""
    ref = {(r["threads"], r["batch"], str(r["seq_len"])): r["p50_ms"] for r in report["rows"]
           if r["model"] == report["models"][0]["name"]}
    rows = [[r["model"], r["threads"], r["batch"], r["seq_len"], f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
             f"{r['p99_ms']:.2f}", f"{r['mean_ms']:.2f}", f"{r['throughput']:.1f}",
             f"×{ref[(r['threads'], r['batch'], str(r['seq_len']))] / r['p50_ms']:.2f}"] for r in report["rows"]]
    cold = [[m["name"], t, f"{m['size_bytes'] / 1e6:.2f}", f"{c['load_ms']:.1f}", f"{c['first_prediction_ms']:.1f}",
             f"{c.get('peak_rss_mb', float('nan')):.1f}"] for m in report["models"] for t, c in m["cold"].items()]
    parts = [table(["model", "threads", "batch", "seq", "p50 ms", "p90 ms", "p99 ms", "mean ms", "seq/s", "speedup"],
                   rows, markdown),
             table(["model", "threads", "size MB", "load ms", "first prediction ms", "peak RSS MB"], cold, markdown),
             "\n".join(f"note: skipped {s}" for s in report.get("skipped", []))]
    if markdown:
        st = report.get("settings", {})
        parts.insert(0, f"# edgeft bench\n\n- machine: {describe_machine(report)}\n- settings: {st.get('runs')} runs "
                        f"after {st.get('warmup')} warm-up per configuration, sentences: {st.get('data')}; "
                        "latency = one model call on pre-tokenized input, ms per batch")
    return "\n\n".join(p for p in parts if p)


def compare(a: dict[str, Any], b: dict[str, Any], markdown: bool = False) -> str:
    """Two bench reports side by side (e.g. one bundle on a Pi and on a laptop): rows matched by model
    name and configuration, or by model position when the two reports share no name; 'b/a' < 1 means
    b is faster."""
    by_name = bool({m["name"] for m in a["models"]} & {m["name"] for m in b["models"]})

    def keyed(rep: dict) -> dict:
        index = {m["name"]: (m["name"] if by_name else i) for i, m in enumerate(rep["models"])}
        return {(index[r["model"]], r["threads"], r["batch"], str(r["seq_len"])): r for r in rep["rows"]}

    def ms(row: dict | None, field: str) -> str:
        return f"{row[field]:.2f}" if row else "—"

    ra, rb = keyed(a), keyed(b)
    rows = []
    for key in [*ra, *(k for k in rb if k not in ra)]:  # a's order, then what only b has
        x, y = ra.get(key), rb.get(key)
        name = (x or y)["model"] if by_name or not (x and y) or x["model"] == y["model"] else f"{x['model']} | {y['model']}"
        rows.append([name, *key[1:], ms(x, "p50_ms"), ms(y, "p50_ms"), ms(x, "p90_ms"), ms(y, "p90_ms"),
                     f"{y['p50_ms'] / x['p50_ms']:.2f}" if x and y else "—"])
    pairs = ([(m, n) for m in a["models"] for n in b["models"] if m["name"] == n["name"]] if by_name
             else list(zip(a["models"], b["models"])))
    cold = [[ma["name"] if ma["name"] == mb["name"] else f"{ma['name']} | {mb['name']}", t,
             f"{ma['cold'][t]['first_prediction_ms']:.1f}", f"{mb['cold'][t]['first_prediction_ms']:.1f}",
             f"{ma['cold'][t].get('peak_rss_mb', 0):.1f}", f"{mb['cold'][t].get('peak_rss_mb', 0):.1f}"]
            for ma, mb in pairs for t in ma["cold"] if t in mb["cold"]]
    head = [f"a: {describe_machine(a)}", f"b: {describe_machine(b)}"]
    return "\n\n".join([
        "\n".join(f"- {h}" for h in head) if markdown else "\n".join(head),
        table(["model", "threads", "batch", "seq", "a p50 ms", "b p50 ms", "a p90 ms", "b p90 ms", "b/a"], rows, markdown),
        table(["model", "threads", "a first ms", "b first ms", "a RSS MB", "b RSS MB"], cold, markdown)])


# ---- worker side: runs in its own process --------------------------------------------------------

def worker_main() -> None:
    """Serve the parent: load the model, report cold start, then configure/run/exit on request."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)  # private stdout for the protocol …
    os.dup2(2, 1)  # … and fd 1 now goes to stderr, so library prints cannot corrupt it
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")

    try:
        args = json.loads(sys.stdin.readline())
        if args["kind"] == "generation":  # text-generation bundles: edgeft.runtime.generate_eval
            from edgeft.runtime.generate_eval import serve_worker

            return serve_worker(args, send, sys.stdin)
        load, run, tokenizer, inputs, pad_id = (_load_pytorch if args["kind"] == "pytorch" else _load_bundle)(args)
        send(load)
        feeds: list = []
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["cmd"] == "config":
                feeds = make_feeds(tokenizer, args["texts"], msg["batch"], msg["seq"], args["max_length"], inputs, pad_id)
                if load.get("batching") == "rows":  # timed as predict runs it: one row per call
                    feeds = [split_rows(f, trim=msg["seq"] == "real") for f in feeds]
                for i in range(msg["warmup"]):
                    run(feeds[i % len(feeds)])
                send({"ok": True})
            elif msg["cmd"] == "run":
                times = []
                for i in range(msg["n"]):
                    t = time.perf_counter()
                    run(feeds[i % len(feeds)])
                    times.append((time.perf_counter() - t) * 1000)  # ms, wall clock, one batch
                send({"times_ms": times})
            else:
                send({"peak_rss_mb": peak_rss_mb()})
                return
    except errors.EdgeftError as e:
        send({"error": str(e), "type": type(e).__name__})


def _load_bundle(args: dict):
    from edgeft.runtime.predictor import Predictor

    t = time.perf_counter()
    p = Predictor.load(args["path"], threads=args["threads"])
    load_ms = (time.perf_counter() - t) * 1000
    p.predict(args["texts"][:1])
    first_ms = (time.time() - args["t0"]) * 1000  # process start → first result
    session, out = p.session, p.manifest.outputs  # every output (QA: start and end logits)

    def run(feeds):  # one batch, or (a "rows" bundle) a list of its rows, run one after the other
        return [session.run(out, f) for f in feeds] if isinstance(feeds, list) else session.run(out, feeds)

    return ({"load_ms": load_ms, "first_prediction_ms": first_ms, "batching": p.settings.batching}, run,
            p.tokenizer, p.manifest.inputs, p.manifest.pad_token_id)


def split_rows(feeds: dict, trim: bool) -> list[dict]:
    """A (batch, width) batch as ``batch`` (1, width) feeds; ``trim``: each cut to its own length (real
    sentences, unpadded, as Predictor runs them), else kept at the fixed width asked for."""
    mask, ids = feeds.get("attention_mask"), feeds["input_ids"]  # (batch, width) each
    widths = mask.sum(axis=1) if trim and mask is not None else [ids.shape[1]] * len(ids)
    return [{k: v[r:r + 1, :int(n)] for k, v in feeds.items()} for r, n in enumerate(widths)]


def _load_pytorch(args: dict):
    """The PyTorch column: edgeft.train.reference (torch, transformers), imported only when asked for."""
    try:
        from edgeft.train.reference import load_for_bench

        return load_for_bench(args["path"], args["threads"], args["texts"], args["max_length"], args["t0"])
    except ImportError as e:  # torch or transformers missing: the train extra
        raise errors.MissingExtraError("bench --pytorch", "train", e.name) from None


def make_feeds(tokenizer, texts: list[str], batch: int, seq, max_length: int, inputs: list[str], pad_id: int
               ) -> list[dict]:
    """Up to DISTINCT_BATCHES model inputs of ``batch`` sequences each: (batch, len) int64 arrays."""
    import numpy as np

    if seq != "real":  # the worker owns this tokenizer: changing its truncation is safe here
        tokenizer.enable_truncation(max_length=seq)
    n = min(DISTINCT_BATCHES, max(1, len(texts) // batch))
    chosen = [tuple(t) if isinstance(t, list) else t for t in (texts[i % len(texts)] for i in range(n * batch))]
    encodings = tokenizer.encode_batch(chosen)  # QA: (question, context) pairs, cut to max_length
    ids = [e.ids for e in encodings]
    feeds = []
    for b in range(n):
        rows = ids[b * batch:(b + 1) * batch]
        width = seq if seq != "real" else max(len(r) for r in rows)
        input_ids = np.full((batch, width), pad_id, dtype=np.int64)  # (batch, width)
        mask = np.zeros((batch, width), dtype=np.int64)
        types = np.zeros((batch, width), dtype=np.int64)  # 1 on a QA context
        for r, row in enumerate(rows):
            input_ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
            types[r, :len(row)] = encodings[b * batch + r].type_ids
        arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
        feeds.append({k: arrays[k] for k in inputs})
    tokenizer.enable_truncation(max_length=max_length)
    return feeds


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    Linux: VmHWM from /proc/self/status, which starts afresh at exec. ru_maxrss does not: a worker
    started from a process that had torch loaded (``edgeft build``) would report the parent's
    ~650 MB. Elsewhere ru_maxrss (KiB on Linux, bytes on macOS).
    """
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e6 if sys.platform == "darwin" else rss * 1024 / 1e6


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    worker_main()
