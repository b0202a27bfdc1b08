"""CLI command of vocabulary trimming: ``edgeft trim-vocab`` (see edgeft.compress.trim_vocab).

Thin: flags become a frozen TrimConfig (checked before anything heavy is imported), the stage
function does the work, and a short summary is printed at the end.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from edgeft.cli import app
from edgeft.cli.distill import progress
from edgeft.cli.options import config_options, examples
from edgeft.compress.trim_vocab import TrimConfig
from edgeft.stage import Splits


@app.command(
    "trim-vocab",
    epilog=examples(
        "edgeft trim-vocab runs/kd3 --data runs/kd3/data/train.jsonl --out runs/kd3-trim",
        "edgeft trim-vocab runs/ft --data corpus.txt --validation dev.csv --min-count 2 --out runs/ft-trim",
    ),
)
@config_options(cfg=TrimConfig, splits=Splits)
def trim_vocab_command(
    model: Path = typer.Argument(..., help="HF model folder with a tokenizer.json (WordPiece or BPE)."),
    out: Path = typer.Option(..., "--out", help="Output folder: the trimmed HF model, vocab_map.json, trim_report.json."),
    data: Path = typer.Option(..., "--data", help="In-domain corpus: .txt (a text per line), .jsonl, .csv/.tsv, .conll."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Held-out labeled file: changed inputs and accuracy before/after."),
    cfg: TrimConfig = None,
    splits: Splits = None,
):
    """Shrink the vocabulary and embedding matrix to the tokens a corpus uses; logits on it stay identical."""
    from edgeft.compress.trim_vocab import trim_vocab

    result = trim_vocab(model, out, replace(splits, train=data, validation=validation), cfg, progress=progress)
    print_trim_summary(result.metrics, out)


def print_trim_summary(report: dict, out: Path) -> None:
    """Vocabulary, parameters and size before/after, and the two checks."""
    v, p, s, c = report["vocab"], report["parameters"], report["size_bytes"], report["corpus_check"]
    typer.echo("")
    typer.echo(f"  vocab       {v['before']} → {v['after']} tokens ({100 * (v['after'] / v['before'] - 1):+.1f} %): "
               f"{v['from_corpus']} from the corpus, {v['special']} special, {v['chars']} characters"
               + (f", {v['for_merges']} for merges" if v.get("for_merges") else ""))
    typer.echo(f"  params      {p['before'] / 1e6:.2f}M → {p['after'] / 1e6:.2f}M   "
               f"weights {s['before'] / 1e6:.1f} MB → {s['after'] / 1e6:.1f} MB")
    typer.echo(f"  corpus      {c['rows']} rows: token ids identical {100 * c['ids_identical']:.1f} %, "
               f"max |Δlogit| {c['max_abs_logit_diff']:.2g}")
    val = report["validation"]
    if val:
        line = (f"  validation  {val['rows']} rows: {100 * val['changed_inputs']:.1f} % changed token ids, "
                f"[UNK] {100 * val['unk_rate']['before']:.2f} % → {100 * val['unk_rate']['after']:.2f} % of tokens")
        if val.get("metric"):
            line += f"; {val['metric']} {val['before']:.4f} → {val['after']:.4f}"
        typer.echo(line)
    typer.echo(f"  saved       {out}/ (model), {out}/vocab_map.json, {out}/trim_report.json")
    typer.echo(f"trimmed vocab: {v['before']} → {v['after']} tokens")
