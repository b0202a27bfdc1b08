"""The distillation loss: label CE plus temperature-softened KL to the teacher, and the optional hidden-state MSE."""

from __future__ import annotations

from typing import Sequence

from edgeft.train.finetune import IGNORE


def distillation_loss(student_logits, teacher_logits, labels, temperature: float = 2.0, alpha: float = 0.5,
                      mask=None) -> dict:
    """α·CE on the labels + (1−α)·T²·KL(teacher_T ‖ student_T), in float32.

    As torchtune's ``ForwardKLLoss`` (kd_losses.py): softmax in float32, the KD term averaged over
    the positions that count. Unlike it we return the true KL, Σ p_t·(log p_t − log p_s), not the
    cross-entropy −Σ p_t·log p_s: the gradient is the same, and the logged value is 0 when the
    student matches the teacher. Logits must be finite (classifier heads are).

    Args:
        student_logits: (batch, labels) or, for token classification, (batch, seq, labels).
        teacher_logits: the same shape; no gradient flows into it.
        labels: (batch,) or (batch, seq) int64 label ids, IGNORE (-100) where a row or position has no label.
        temperature: T > 0; both distributions are softened by it.
        alpha: weight of the CE term in [0, 1].
        mask: (batch, seq) where the KD term applies (token task: each word's first sub-token, also on
            unlabeled rows); None = every row (sequence task).
    Returns:
        {"loss": scalar with grad, "ce": CE over labelled positions (0 if none), "kd": KL at T, mean
        over KD positions (not multiplied by T²)}.
    """
    import torch
    import torch.nn.functional as F

    s = student_logits.float()
    log_p_s = F.log_softmax(s / temperature, dim=-1)  # (..., labels)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # (batch,) or (batch, seq)
    weight = torch.ones_like(kl) if mask is None else mask.to(kl.dtype)
    kd = (kl * weight).sum() / weight.sum().clamp(min=1)

    labelled = labels != IGNORE  # unlabeled / augmented rows and non-first sub-tokens have no label
    ce_sum = F.cross_entropy(s.reshape(-1, s.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    ce = ce_sum / labelled.sum().clamp(min=1)  # a batch of unlabeled rows: 0, not NaN
    loss = alpha * ce + (1 - alpha) * temperature**2 * kd
    return {"loss": loss, "ce": ce.detach(), "kd": kd.detach()}


def hidden_mse(student_hidden, teacher_hidden, pairs: Sequence[tuple[int, int]], attention_mask):
    """Mean over layer pairs of the MSE between hidden states, over real (non-pad) positions.

    Args:
        student_hidden, teacher_hidden: ``output_hidden_states`` tuples; entry 0 is the embedding
            output, entry i the output of layer i; each (batch, seq, hidden).
        pairs: (student index, teacher index) into those tuples.
        attention_mask: (batch, seq), 1 for real tokens.
    """
    m = attention_mask.unsqueeze(-1).float()  # (batch, seq, 1)
    per_pair = [(((student_hidden[s].float() - teacher_hidden[t].detach().float()) ** 2) * m).sum()
                / (m.sum() * student_hidden[s].shape[-1]).clamp(min=1) for s, t in pairs]
    return sum(per_pair) / len(per_pair)
