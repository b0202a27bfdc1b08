"""Write bundles atomically, and read the FP32 bundles that ``edgeft quantize`` accepts as input.

A bundle is never half-written: files are copied into a temp folder beside the destination, hashed,
the manifest is written last, and only then is the folder renamed into place (``os.replace``, atomic
on one filesystem). A ``.zip`` is written to a temp file beside the destination and renamed the same
way. A failure at any point leaves the destination absent or as it was (``edgeft.writable``).
"""

from __future__ import annotations

import datetime as _dt
import shutil
import zipfile
from pathlib import Path

from edgeft.errors import BundleError, ConfigError
from edgeft.runtime.manifest import MANIFEST_NAME, Manifest, file_digest
from edgeft.runtime.session import batching_of
from edgeft.versions import versions
from edgeft.writable import atomic_file, atomic_folder, check_writable, recover, scratch_folder


def _check_destination(dest: Path, zipped: bool) -> None:
    """Refuse to replace anything that is not a bundle: --out must never eat a user's folder."""
    if not dest.exists():
        return
    if zipped:
        if dest.is_dir():
            raise ConfigError(f"--out {dest} is a folder; a --zip bundle needs a file name ending in .zip.")
        if not zipfile.is_zipfile(dest) or MANIFEST_NAME not in zipfile.ZipFile(dest).namelist():
            raise ConfigError(f"--out {dest} exists and is not an edgeft bundle; choose another path or remove it.")
    elif not dest.is_dir() or not ((dest / MANIFEST_NAME).is_file() or not any(dest.iterdir())):
        raise ConfigError(f"--out {dest} exists and is not an edgeft bundle; choose another path or remove it.")


def check_output(dest: str | Path, zipped: bool = False) -> Path:
    """The bundle path ``write_bundle`` will use, refused now if it is not a bundle or cannot be
    written: export and quantize call this first, so a bad --out fails before minutes of work."""
    dest = Path(dest)
    if zipped and dest.suffix != ".zip":
        dest = dest.with_name(dest.name + ".zip")
    _check_destination(dest, zipped)
    check_writable(dest)
    return dest


def write_bundle(dest: str | Path, files: dict[str, str | Path], manifest: Manifest, zipped: bool = False) -> Path:
    """Write ``files`` (name in the bundle → source path) plus ``edgeft.json`` to ``dest``.

    Fills ``manifest.files`` (sha256 + size of each file), ``created``, ``versions`` and ``batching``
    (if empty; from the quantization settings, as the runtime infers it for older bundles).
    An existing bundle at ``dest`` is replaced; anything else there is refused (ConfigError).

    Returns:
        ``dest``.
    """
    dest = check_output(dest, zipped)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        recover(dest)
        return _write(dest, files, manifest, zipped)
    except OSError as e:  # disk full, read-only, …: name the bundle, not our temp file
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(dest)) from e


def _write(dest: Path, files: dict[str, str | Path], manifest: Manifest, zipped: bool) -> Path:
    # A zip is staged in a scratch folder, then zipped into a temp file renamed onto dest; a folder
    # bundle is staged in the temp folder that replaces dest.
    with (scratch_folder(dest) if zipped else atomic_folder(dest)) as tmp:
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
        manifest.files = {name: file_digest(tmp / name) for name in files}
        manifest.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        manifest.versions = manifest.versions or versions()
        manifest.batching = batching_of(manifest)
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")  # last: a bundle with it is whole
        if zipped:
            with atomic_file(dest) as tmp_zip, zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as z:
                for path in sorted(tmp.iterdir()):
                    z.write(path, path.name)
    return dest


def read_bundle(path: str | Path, work_dir: str | Path) -> tuple[Manifest, Path]:
    """Open a bundle (folder or .zip) for quantization: the runtime's verification (format version,
    fields, sha256 of every file), then onnx.checker, which the runtime leaves to onnxruntime.

    Args:
        path: the bundle; work_dir: where the files of a .zip are written out.
    Returns:
        (manifest, folder holding model and tokenizer files).
    Raises:
        BundleError: naming the file and the fix.
    """
    import onnx

    from edgeft.runtime.bundle import load_bundle

    bundle = load_bundle(path)
    m = bundle.manifest
    folder = Path(path)
    if isinstance(bundle.model, bytes):  # a verified .zip, read into memory: write the two files out
        folder = Path(work_dir) / "source-bundle"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / m.model_file).write_bytes(bundle.model)
        (folder / m.tokenizer_file).write_text(bundle.tokenizer_json, encoding="utf-8")
    try:
        onnx.checker.check_model(str(folder / m.model_file))
    except Exception as e:  # ValidationError, or a file that is not an ONNX protobuf at all
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BundleError(f"{path}/{m.model_file} fails onnx.checker: {first}. Re-export the model.") from None
    return m, folder
