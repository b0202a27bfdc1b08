"""``edgeft eval``: score a bundle on a labeled file with the same metrics training reported.

Reading (edgeft.data) and scoring (edgeft.metrics) are the very functions ``edgeft train`` uses,
so a bundle's accuracy is comparable with its FP32 model's to the last digit; only the forward
pass differs. NER is scored per word, like training: pre-split words go through the tokenizer
with ``is_pretokenized=True`` and each word takes its first sub-token's tag. Question answering
is scored with the official SQuAD v1.1 exact match and F1 (edgeft.squad) on the decoded answers.
"""

from __future__ import annotations

import time
from pathlib import Path



def evaluate(predictor, data: str | Path, text_column: str = "text", label_column: str = "label",
             skip_bad_rows: bool = False, keep_predictions: bool = False) -> dict:
    """Predict every example of ``data`` and score the predictions.

    Args:
        predictor: a loaded edgeft.runtime.predictor.Predictor.
        data: CSV/TSV/JSONL (text + label), JSONL/CoNLL (tokens + tags) or SQuAD file.
    Returns:
        the metrics of edgeft.metrics (classification_metrics or ner_metrics) or of
        edgeft.squad.squad_metrics (question answering; "truncated" = questions cut) plus "bundle",
        "data", "task", "truncated" (examples longer than max_length), "skipped" (bad rows),
        "batching" (the bundle's: its scores equal one text at a time) and "seconds" (wall clock of
        the predictions); with ``keep_predictions``, "predictions" too (a
        label per text, or a tag list per sentence), for agreement between two bundles.
    Raises:
        DataError: a bad row, or a label the bundle does not know (naming file, line and label).
    """
    from edgeft.data import check_labels, read_dataset
    from edgeft.metrics import classification_metrics, ner_metrics

    m = predictor.manifest
    ds = read_dataset(data, task=m.task, text_column=text_column, label_column=label_column,
                      skip_bad_rows=skip_bad_rows)
    ner = m.task == "token-classification"
    check_labels(ds, m.labels, "the bundle's labels")  # fail before spending time on predictions
    t0 = time.perf_counter()
    if m.task == "question-answering":
        from edgeft.squad import squad_metrics

        answers = predictor.predict([ex.pair for ex in ds.examples])
        scores = squad_metrics([ex.answers for ex in ds.examples], [a.answer for a in answers])
        truncated = sum(a.truncated for a in answers)
        predictions = [a.answer for a in answers]
    elif ner:
        tagged = predictor.tag_words([ex.tokens for ex in ds.examples])
        scores = ner_metrics([list(ex.tags) for ex in ds.examples], [tags for tags, _ in tagged])
        truncated = sum(cut for _, cut in tagged)
        predictions = [list(tags) for tags, _ in tagged]
    else:
        preds = predictor.predict([ex.text for ex in ds.examples])
        scores = classification_metrics([str(ex.label) for ex in ds.examples], [p.label for p in preds], m.labels)
        truncated = sum(p.truncated for p in preds)
        predictions = [p.label for p in preds]
    return {**scores, "bundle": str(predictor.source), "data": str(data), "task": m.task, "truncated": truncated,
            "skipped": len(ds.skipped), "batching": predictor.settings.batching, "seconds": time.perf_counter() - t0,
            **({"predictions": predictions} if keep_predictions else {})}
