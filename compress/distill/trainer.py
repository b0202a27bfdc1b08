"""The Hugging Face Trainer subclass whose loss is the distillation loss, and its collator."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from edgeft.compress.distill.config import DistillConfig
from edgeft.compress.distill.loss import distillation_loss, hidden_mse


KD_COLUMNS = ("teacher_logits", "kd_mask")  # feature columns the Trainer must pass through to compute_loss


@dataclass(frozen=True)
class KDCollator:
    """The usual collator plus the cached teacher logits (and KD mask), padded to the batch's length."""

    base: Callable  # DataCollatorWithPadding / DataCollatorForTokenClassification
    padding_side: str = "right"

    def __call__(self, features: list[dict]) -> dict:
        import numpy as np
        import torch

        batch = self.base([{k: v for k, v in f.items() if k not in KD_COLUMNS} for f in features])
        if "teacher_logits" not in features[0]:  # validation/test rows
            return batch
        first = features[0]["teacher_logits"]
        if first.ndim == 1:  # (batch, labels)
            batch["teacher_logits"] = torch.from_numpy(np.stack([f["teacher_logits"] for f in features]))
            return batch
        seq = batch["input_ids"].shape[1]
        logits = np.zeros((len(features), seq, first.shape[1]), dtype=np.float32)  # (batch, seq, labels)
        mask = np.zeros((len(features), seq), dtype=np.float32)  # (batch, seq), 0 on padding
        for i, f in enumerate(features):
            n = len(f["kd_mask"])
            at = slice(seq - n, seq) if self.padding_side == "left" else slice(0, n)
            logits[i, at], mask[i, at] = f["teacher_logits"], f["kd_mask"]
        batch["teacher_logits"], batch["kd_mask"] = torch.from_numpy(logits), torch.from_numpy(mask)
        return batch


def distill_trainer_class():
    """The Trainer subclass (defined lazily: transformers is an optional extra)."""
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """Trainer whose training loss is ``distillation_loss`` on the cached teacher logits.

        Evaluation batches carry no teacher logits and get the model's own CE, as in edgeft train.
        With ``hidden_pairs`` the teacher runs (no grad) on every batch for its hidden states: those are
        (seq × hidden) per layer per row, too big to cache (≈1.7 GB for SST-2 on MiniLM).
        """

        loss_is_scaled_for_ga = False  # our loss is a per-batch mean: the Trainer divides by the GA steps

        def __init__(self, *args, kd: DistillConfig, teacher=None, hidden_pairs=None, data_collator=None, **kwargs):
            tokenizer = kwargs.get("processing_class")
            collator = KDCollator(data_collator, getattr(tokenizer, "padding_side", "right"))
            super().__init__(*args, data_collator=collator, **kwargs)
            self.kd, self.teacher, self.hidden_pairs = kd, teacher, hidden_pairs
            self._teacher_inputs = set(inspect.signature(teacher.forward).parameters) if teacher is not None else set()
            self._parts: dict[str, float] = {}
            self._parts_n = 0

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()  # the columns the model's forward takes …
            self._signature_columns += [c for c in KD_COLUMNS if c not in self._signature_columns]  # … and ours

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "teacher_logits" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            import torch

            teacher_logits = inputs.pop("teacher_logits")  # (batch, labels) or (batch, seq, labels), cached
            kd_mask = inputs.pop("kd_mask", None)  # (batch, seq) token task
            if "start_positions" in inputs:  # QA: two classifications over the positions, start and end
                positions = torch.stack([inputs.pop("start_positions"), inputs.pop("end_positions")], 1)  # (batch, 2)
                outputs = model(**inputs, output_hidden_states=bool(self.hidden_pairs))
                pad = (kd_mask == 0).unsqueeze(1)  # (batch, 1, seq): padding gets no probability in either
                student = torch.stack([outputs.start_logits, outputs.end_logits], 1).float().masked_fill(pad, -1e4)
                teacher = teacher_logits.transpose(1, 2).masked_fill(pad, -1e4)  # (batch, 2, seq)
                parts = distillation_loss(student.flatten(0, 1), teacher.flatten(0, 1), positions.flatten(),
                                          self.kd.temperature, self.kd.alpha)
            else:
                labels = inputs.pop("labels")  # IGNORE on rows/positions without a label
                outputs = model(**inputs, output_hidden_states=bool(self.hidden_pairs))
                parts = distillation_loss(outputs.logits, teacher_logits, labels, self.kd.temperature, self.kd.alpha,
                                          kd_mask)
            loss = parts.pop("loss")
            if self.hidden_pairs:
                self.teacher.to(inputs["input_ids"].device)
                with torch.no_grad():
                    t_out = self.teacher(**{k: v for k, v in inputs.items() if k in self._teacher_inputs},
                                         output_hidden_states=True)
                parts["hidden"] = hidden_mse(outputs.hidden_states, t_out.hidden_states, self.hidden_pairs,
                                             inputs["attention_mask"])
                loss = loss + self.kd.hidden_weight * parts["hidden"]
                parts["hidden"] = parts["hidden"].detach()
            for name, value in parts.items():  # averaged into the next log line (this process's batches)
                self._parts[name] = self._parts.get(name, 0.0) + float(value)
            self._parts_n += 1
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            if "loss" in logs and self._parts_n:
                logs.update({f"{k}_loss": float(f"{v / self._parts_n:.6g}") for k, v in self._parts.items()})
                self._parts, self._parts_n = {}, 0
            super().log(logs, *args, **kwargs)

    return DistillTrainer
