"""Parity: does the ONNX file compute what the PyTorch model computes?

Modelled on optimum's ``validate_model_outputs``: run both on the same real inputs and report, per
output, the max |Δ| (with ✓/✗ against the tolerance), then fail with a typed error that carries the
numbers. Two things go beyond it. The grid covers several batch sizes and lengths, with padded
batches, because an export traced at one shape can be wrong at another. Differences are measured
over non-pad positions only: the logits of pad tokens are never read. Argmax agreement is reported
next to the raw difference, since it is what a user sees.

Inputs are built with the bundle's ``tokenizer.json`` (the runtime's tokenizer), so the check also
covers tokenization: the ids must equal those of the transformers tokenizer the model was trained
with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from edgeft.errors import ParityError

# A handful of varied sentences for when the user gives no data: short and long, punctuation,
# numbers, casing, accents and a non-Latin script, so that unusual ids reach the model too.
BUILTIN_TEXTS = (
    "I loved this film.",
    "The service was slow, the food was cold and nobody apologised.",
    "Not bad at all!",
    "Transfer 250 EUR to my savings account on 3 March, please.",
    "Où est la gare ? Je cherche le train de 8h15.",
    "It's neither the best nor the worst thing I've seen this year; somewhere in the middle, really.",
    "東京で会いましょう",
    "ok",
    "Steve Jobs introduced the iPhone at Macworld in San Francisco in January 2007.",
    "WHY IS MY CARD DECLINED AGAIN??? this is the third time today",
)

# (batch, seq cap) cells of the grid. seq cap None = the batch's natural longest length;
# "max" = texts repeated until they fill max_length. Rows after the first are right-padded.
GRID: tuple[tuple[int, int | str | None], ...] = ((1, None), (1, 4), (2, None), (4, 16), (8, None), (3, "max"))


@dataclass(frozen=True)
class ParityReport:
    """Numbers of one parity check; ``to_dict()`` goes into the manifest."""

    atol: float
    max_abs_diff: dict[str, float]  # output name → max |Δ| over non-pad positions, all cells
    argmax_agreement: float  # fraction of (row[, token]) argmaxes equal between PyTorch and ONNX
    compared: int  # how many argmaxes were compared …
    unit: str = "rows"  # … of what: "rows" (sequence task) or "tokens" (token task, non-pad only)
    shapes: list[tuple[int, int]] = field(default_factory=list)  # (batch, seq) of every cell run
    tokenizer_match: bool = True  # bundle tokenizer ids == transformers tokenizer ids
    passed: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shapes"] = [list(s) for s in self.shapes]
        return d

    def lines(self) -> list[str]:
        """optimum-style per-output lines: ``- logits: max |Δ| = 3.1e-08 ✓ (atol 1e-04)``."""
        out = [f"- {name}: max |Δ| = {diff:.2e} {'✓' if diff <= self.atol else '✗'} (atol {self.atol:.0e})"
               for name, diff in self.max_abs_diff.items()]
        out.append(f"- argmax agreement: {self.argmax_agreement:.2%} of {self.compared} {self.unit}")
        if not self.tokenizer_match:
            out.append("- tokenizer.json ids differ from the transformers tokenizer's ✗")
        return out


def grid_batches(tok, texts: Sequence, max_length: int, grid=GRID) -> list[list]:
    """Encodings for each grid cell: real texts (or QA (question, context) pairs), cycled;
    (batch, cap) → ``batch`` encodings of ≤ cap ids."""
    texts = list(texts) or list(BUILTIN_TEXTS)
    cells, k = [], 0
    for batch, cap in grid:
        rows = []
        for _ in range(batch):
            text = texts[k % len(texts)]
            k += 1
            if cap == "max":  # long enough to hit truncation at max_length (QA: a long context)
                if isinstance(text, tuple):
                    text = (text[0], " ".join([text[1]] * (max_length // max(1, len(text[1].split())) + 2)))
                else:
                    text = " ".join([text] * (max_length // max(1, len(text.split())) + 2))
            rows.append(text)
        encs = tok.encode_batch(rows)
        if isinstance(cap, int):
            encs = [_cut(e, cap) for e in encs]
        cells.append(encs)
    return cells


def _cut(enc, cap: int):
    """An encoding truncated to ``cap`` ids (``Encoding.truncate`` keeps special tokens out)."""
    if len(enc.ids) > cap:
        enc.truncate(cap)
    return enc


def check_parity(model, onnx_path, tokenizer_path, m, texts: Sequence[str] = (), atol: float = 1e-4,
                 hf_tokenizer=None, raise_on_failure: bool = True) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the grid and compare.

    Args:
        model: the PyTorch model in eval mode.
        onnx_path, tokenizer_path: the exported model and the bundle tokenizer.
        m: the bundle manifest (input and output names, pad id, max length).
        texts: real sentences (``--data``), or (question, context) pairs for QA; the built-in handful when empty.
        atol: max allowed |Δ| per output over non-pad positions.
        hf_tokenizer: the transformers tokenizer, to confirm the bundle tokenizer gives the same ids.
    Returns:
        The report (also when it fails, if ``raise_on_failure`` is False).
    Raises:
        ParityError: with the per-output numbers, when a difference exceeds ``atol`` or the tokenizers
            disagree. (Argmax agreement is reported, not gated: within atol only near-ties can flip.)
    """
    import torch

    from edgeft.compress.evaluate import feeds, load_tokenizer
    from edgeft.runtime.session import open_session, settings_for

    tok = load_tokenizer(tokenizer_path, m.max_length)
    sess = open_session(onnx_path, settings_for(m, threads=1))  # the FP32 bundle's own session
    output_names = list(m.outputs)  # every output is compared (QA has two: start and end logits)
    per_token = m.task != "text-classification"  # NER logits, QA start/end: one row per token
    worst = {name: 0.0 for name in output_names}
    agree = total = 0
    shapes, tokenizer_match = [], True
    for encs in grid_batches(tok, texts, m.max_length):
        arrays = feeds(encs, m)  # (batch, seq) int64 each
        shapes.append(tuple(arrays["input_ids"].shape))
        mask = arrays["attention_mask"].astype(bool) if "attention_mask" in arrays else None
        with torch.no_grad():
            ref = model(**{k: torch.from_numpy(v) for k, v in arrays.items()})
        got = sess.run(output_names, arrays)
        for name, onnx_out in zip(output_names, got):
            torch_out = ref[name].float().numpy()
            diff = np.abs(torch_out - onnx_out)  # (batch, n), (batch, seq, n) or QA (batch, seq)
            if per_token and mask is not None:
                diff = diff[mask]  # non-pad tokens only: pad-position logits are never read
            worst[name] = max(worst[name], float(diff.max()) if diff.size else 0.0)
            if m.task == "question-answering":  # the start (end) token each picks, pads excluded
                pick = [np.where(mask, out, -np.inf).argmax(-1) if mask is not None else out.argmax(-1)
                        for out in (torch_out, onnx_out)]
                agree, total = agree + int((pick[0] == pick[1]).sum()), total + len(pick[0])
            elif name == output_names[0]:
                same = torch_out.argmax(-1) == onnx_out.argmax(-1)  # (batch,) or (batch, seq)
                same = same[mask] if same.ndim == 2 and mask is not None else same
                agree, total = agree + int(same.sum()), total + same.size
    if hf_tokenizer is not None:
        sample = (list(texts) or list(BUILTIN_TEXTS))[:50]
        pairs = isinstance(sample[0], tuple)  # QA: the tokenizers' pair templates must agree too
        ref_ids = hf_tokenizer(*([list(x) for x in zip(*sample)] if pairs else [sample]), truncation=True,
                               max_length=m.max_length)["input_ids"]
        tokenizer_match = [e.ids for e in tok.encode_batch(sample)] == [list(r) for r in ref_ids]
    report = ParityReport(
        atol=atol, max_abs_diff=worst, argmax_agreement=agree / total if total else 1.0, compared=total,
        unit="tokens" if m.task == "token-classification" else "rows",
        shapes=shapes, tokenizer_match=tokenizer_match,
        passed=all(d <= atol for d in worst.values()) and tokenizer_match,
    )
    if raise_on_failure and not report.passed:
        raise ParityError(
            f"{onnx_path}: the ONNX export does not reproduce the PyTorch model (shapes "
            f"{', '.join(f'{b}x{s}' for b, s in shapes)}):\n" + "\n".join(report.lines()) +
            "\nTry another --opset; if the model is fine and the differences are rounding noise, raise --atol.")
    return report
