"""Distil a fine-tuned classifier (the teacher) into a smaller student with the Hugging Face Trainer.

``distill(teacher_dir, data, out_dir, cfg)`` is the whole stage. The student is either the teacher
with fewer layers (embeddings, a chosen subset of the blocks and the fine-tuned head copied bit for
bit) or any smaller pretrained model (``--student``). It learns from

    loss = α·CE(student, labels) + (1−α)·T²·KL(softmax(teacher/T) ‖ softmax(student/T))  [+ β·hidden MSE]

(Hinton et al. 2015; the T² keeps the soft-target gradients on the same scale as the CE's when T
changes). The transfer set is the training data, plus optional unlabeled in-domain text and
seeded variants of the training rows (words swapped for their nearest neighbours in the teacher's
embeddings, TinyBERT's augmentation, or masked / dropped); rows without a label (unlabeled,
augmented) get the KD term only. The teacher's logits for these fixed inputs are computed once,
before training, and travel with each row as a feature column: the teacher costs one inference
pass, not one per epoch.

Everything else is ``edgeft train``'s machinery (``edgeft.train.finetune``): splits, encoding, the
Trainer with evaluation, early stopping, checkpoints and ``--resume``, the output folder, and so
multi-GPU / multi-node through torchrun or accelerate:

    edgeft distill runs/ft --data train.csv --layers 3 --out runs/kd3             # 1 CPU or GPU
    torchrun --nproc_per_node 4 -m edgeft distill runs/ft --data train.csv --out runs/kd3   # 4 GPUs

Under torchrun every rank computes the teacher logits for the whole transfer set once (one
inference pass per GPU, no communication); the Trainer then shards the rows.

The stage is a package, a module for each part: ``config`` (DistillConfig), ``loss`` (the KD loss and
the hidden-state MSE), ``student`` (teacher info, the cut-down or pretrained student, layer pairs),
``transfer`` (the transfer set, augmentation, the cached teacher logits), ``trainer`` (the Trainer
subclass and its collator) and ``compare`` (teacher vs student on the test split). ``stage`` holds
``distill()``; this module re-exports the names other code uses, imported on first use, so that
reading ``DistillConfig`` (the CLI, a recipe) costs no training imports.
"""

from edgeft.lazy import lazy_exports

_EXPORTS = {  # what other code imports from edgeft.compress.distill → the module defining it
    **dict.fromkeys(["DEFAULT_LAYERS", "DistillConfig"], "config"),
    **dict.fromkeys(["distillation_loss", "hidden_mse"], "loss"),
    **dict.fromkeys(["QA", "Student", "cut_layers", "evenly_spaced", "find_layers", "layer_pairs", "make_student",
                     "task_of", "teacher_info"], "student"),
    **dict.fromkeys(["NO_LABEL", "TransferSet", "UNLABELED", "attach_teacher_logits", "augment", "encode_transfer",
                     "read_texts", "run_model", "transfer_set", "unlabeled_examples", "word_neighbours"], "transfer"),
    **dict.fromkeys(["compare_on_test", "flops_per_token", "parameters", "prediction_agreement", "qa_scores", "stack_outputs"], "compare"),
    **dict.fromkeys(["KDCollator", "KD_COLUMNS"], "trainer"),
    **dict.fromkeys(["distill"], "stage"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
