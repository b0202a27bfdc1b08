"""The output folder of a training run, shared by ``edgeft train``, ``distill`` and ``trim-vocab``.

One policy for all three: a non-empty folder is never mixed with a new run (``check_output_dir``),
``--resume`` continues from the newest checkpoint that was saved completely (``last_checkpoint``),
and the final model lands in the folder only once it is written whole (``save_model``).
"""

from __future__ import annotations

from pathlib import Path

from edgeft.errors import ConfigError
from edgeft.writable import check_writable, scratch_folder


def check_output_dir(out: Path, resume: bool = False, force: bool = False) -> None:
    """Refuse to mix runs: a non-empty output folder needs --resume (same run) or --force (replace).

    Raises:
        ConfigError naming --out and the three ways out; also when the folder cannot be written.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; choose a folder path.")
    if out.is_dir() and any(out.iterdir()) and not resume and not force:
        raise ConfigError(f"--out {out} is not empty; choose a new folder, pass --resume to continue that run, "
                          f"or --force to replace it.")
    check_writable(out)


def last_checkpoint(out: Path) -> str | None:
    """The newest *complete* checkpoint under ``out/checkpoints``, or None: the Trainer writes
    trainer_state.json last, so a run killed while saving leaves a folder without it, and resuming
    from that folder would fail."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    folder = out / "checkpoints"
    done = [p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
            if p.name.rsplit("-", 1)[1].isdigit() and (p / "trainer_state.json").is_file()] if folder.is_dir() else []
    return str(max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]))) if done else None


def save_model(trainer, tokenizer, out: Path) -> None:
    """Write the trainer's (best) model and the tokenizer into ``out``: into a temp folder first, then
    moved into place file by file (the run folder also holds the splits, curves and checkpoints)."""
    with scratch_folder(out / "model") as tmp:
        trainer.save_model(str(tmp))  # safetensors + config with id2label/label2id
        tokenizer.save_pretrained(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; nothing downstream needs it
        for item in tmp.iterdir():
            item.replace(out / item.name)
