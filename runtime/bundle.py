"""Read and verify a bundle (a folder or a ``.zip`` of one) before anything executes it.

Verification happens before an onnxruntime session exists, because a session parses the model: a
corrupted or swapped ``model.onnx`` must be refused by its hash, not discovered by a crash or by
quietly wrong predictions. Checks, in order: the manifest parses and has a format version this
runtime reads; its fields have the right types; every listed file name stays inside the bundle;
every file exists with the size and sha256 the manifest records.

Zips are read into memory member by member (no extraction, so no zip-slip), and only after each
member's declared size matched the manifest and a global cap (a zip bomb declares small sizes
and inflates to huge ones; zipfile never returns more bytes than declared, so the cap holds).

Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import MISSING, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from edgeft.errors import BundleError
from edgeft.runtime.manifest import FORMAT_VERSION, MANIFEST_NAME, TASKS, Manifest, file_digest

MAX_MANIFEST_BYTES = 1 << 20  # 1 MiB: a manifest is a few KB; more is not a manifest
MAX_BUNDLE_BYTES = 8 << 30  # 8 GiB: cap on the sum of a zip's members (bigger than any edge model)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the ONNX inputs the runtime can feed


@dataclass(frozen=True)
class Bundle:
    """A verified bundle. ``model`` is a file path for folders (ORT reads it itself, so a large model
    is not held twice in memory) or the verified bytes for zips; ``tokenizer_json`` is the text."""

    source: Path  # the folder or .zip as given
    manifest: Manifest
    model: str | bytes
    tokenizer_json: str
    sizes: dict[str, int]  # file name → bytes, as verified


def load_bundle(path: str | Path, max_bytes: int = MAX_BUNDLE_BYTES) -> Bundle:
    """Verify and read the bundle at ``path``.

    Args:
        path: a bundle folder, or a ``.zip`` holding one (at its root or in one top-level folder).
        max_bytes: refuse a zip whose members add up to more than this (zip-bomb guard).
    Returns:
        the verified Bundle.
    Raises:
        BundleError: naming the file and what differs.
    """
    source = Path(path)
    if not source.exists():
        raise BundleError(f"bundle not found: {source} (give the folder `edgeft export` wrote, or its .zip)")
    if source.is_dir():
        return _load_folder(source)
    if zipfile.is_zipfile(source):
        return _load_zip(source, max_bytes)
    raise BundleError(f"{source} is neither a bundle folder nor a .zip file")


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """Check the format version, then the fields. ``where`` names the manifest in messages."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{where} is not valid JSON ({e}); the bundle is damaged — rebuild it") from None
    if not isinstance(data, dict):
        raise BundleError(f"{where} must hold a JSON object, not {type(data).__name__}")
    # The version comes first: a newer format may have renamed the other fields.
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{where} has no integer format_version (found {version!r}); it is not an edgeft bundle")
    if version > FORMAT_VERSION:
        raise BundleError(f"{where} has format version {version}, but this edgeft reads up to version "
                          f"{FORMAT_VERSION}: upgrade edgeft (pip install -U edgeft)")
    if version < 1:
        raise BundleError(f"{where} has format version {version}; supported versions are 1..{FORMAT_VERSION}")
    missing = [f.name for f in fields(Manifest) if f.name not in data and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise BundleError(f"{where} is incomplete: missing {', '.join(missing)}; rebuild the bundle with `edgeft export`")
    manifest = Manifest.from_dict(data)
    _check_fields(manifest, where)
    return manifest


def _check_fields(m: Manifest, where: str) -> None:
    """Types and values the runtime relies on; every problem at once, so one fix round suffices."""
    problems = []

    def expect(ok: bool, text: str) -> None:
        if not ok:
            problems.append(text)

    expect(m.task in TASKS, f"task {m.task!r} is not one of {list(TASKS)}")
    qa = m.task in ("question-answering", "text-generation")  # no labels
    expect(isinstance(m.labels, list) and (qa or len(m.labels) > 0) and all(isinstance(x, str) for x in m.labels),
           "labels must be a non-empty list of strings")
    if m.task == "text-generation":  # what edgeft.runtime.generate reads
        gen = m.extra.get("generation")
        expect(isinstance(gen, dict) and _is_int(gen.get("context_length")) and isinstance(gen.get("past"), list),
               "a text-generation manifest needs generation {context_length, past, ...}")
    elif m.task == "question-answering":  # the windowing the runtime needs (edgeft.runtime.qa.settings)
        keys = ("doc_stride", "max_question_tokens", "max_answer_tokens")
        expect(isinstance(m.qa, dict) and all(_is_int(m.qa.get(k)) for k in keys),
               f"a question-answering manifest needs qa {{{', '.join(keys)}}} as integers, not {m.qa!r}")
        expect(len(m.outputs) == 2, f"a question-answering model has two outputs (start, end logits), not {m.outputs!r}")
    expect(_is_int(m.max_length) and m.max_length > 1, f"max_length must be an integer > 1, not {m.max_length!r}")
    expect(_is_int(m.pad_token_id) and m.pad_token_id >= 0, f"pad_token_id must be an integer ≥ 0, not {m.pad_token_id!r}")
    expect(isinstance(m.inputs, list) and "input_ids" in m.inputs and set(m.inputs) <= set(INPUTS),
           f"inputs must include input_ids and be among {list(INPUTS)}, not {m.inputs!r}")
    expect(isinstance(m.outputs, list) and len(m.outputs) >= 1 and all(isinstance(x, str) for x in m.outputs),
           "outputs must be a non-empty list of names (the first one is the logits)")
    files_ok = isinstance(m.files, dict) and all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and _is_int(v.get("size")) for v in m.files.values())
    expect(files_ok, 'files must map each file name to {"sha256": str, "size": int}')
    for name in (m.model_file, m.tokenizer_file):
        expect(isinstance(name, str) and files_ok and name in m.files, f"files has no entry for {name!r}")
    if problems:
        raise BundleError(f"{where} is invalid: " + "; ".join(problems))
    for name in m.files:
        check_name(name, where)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_name(name: str, where: str) -> PurePosixPath:
    """A file name from a manifest or zip must be a relative path inside the bundle."""
    p = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or p.is_absolute() or ".." in p.parts
            or (len(name) > 1 and name[1] == ":")):  # C:foo — a Windows drive
        raise BundleError(f"{where} names the file {name!r}, which is outside the bundle folder; "
                          "a bundle may only list files inside itself (the bundle may have been tampered with)")
    return p


def _load_folder(root: Path) -> Bundle:
    where = str(root / MANIFEST_NAME)
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise BundleError(f"{root} has no {MANIFEST_NAME}: not a bundle (build one with `edgeft export`)")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{where} is larger than {MAX_MANIFEST_BYTES} bytes; it is not a manifest")
    manifest = parse_manifest(mpath.read_bytes(), where)
    real_root = root.resolve()
    sizes, tok = {}, b""
    for name, want in manifest.files.items():
        path = root / name
        if not path.resolve().is_relative_to(real_root):  # a symlink pointing out of the bundle
            raise BundleError(f"{path} resolves outside the bundle folder; refusing to read it")
        if not path.is_file():
            raise BundleError(f"{path} is missing (listed in {MANIFEST_NAME}); the bundle is incomplete")
        if name == manifest.tokenizer_file:  # small: hash the very bytes that will be used
            tok = path.read_bytes()
            got = _digest(tok)
        else:  # the model: streamed, then read again by onnxruntime from the same path
            got = file_digest(path)
        _compare(name, want, got, root)
        sizes[name] = want["size"]
    return Bundle(root, manifest, str(root / manifest.model_file), _decode(tok, manifest.tokenizer_file, root), sizes)


def _load_zip(source: Path, max_bytes: int) -> Bundle:
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as e:
        raise BundleError(f"{source} is not a readable zip file: {e}") from None
    with zf:
        infos = {}
        for info in zf.infolist():  # refuse zip-slip names even if we would never read them
            check_name(info.filename.rstrip("/") or info.filename, f"{source} (zip entry)")
            infos[info.filename] = info
        total = sum(i.file_size for i in infos.values())
        if total > max_bytes:
            raise BundleError(f"{source} would unpack to {total} bytes, over the {max_bytes}-byte limit; "
                              "refusing it (a zip bomb, or not a bundle)")
        prefix = _zip_prefix(source, infos)
        minfo = infos[prefix + MANIFEST_NAME]
        where = f"{source}:{prefix}{MANIFEST_NAME}"
        if minfo.file_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{where} declares {minfo.file_size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
        manifest = parse_manifest(_read_member(zf, minfo, minfo.file_size, where), where)
        data, sizes = {}, {}
        for name, want in manifest.files.items():
            info = infos.get(prefix + name)
            if info is None:
                raise BundleError(f"{source}:{prefix}{name} is missing (listed in {MANIFEST_NAME}); the bundle is incomplete")
            if info.file_size != want["size"]:  # checked before inflating anything
                raise BundleError(f"{source}:{prefix}{name} declares {info.file_size} bytes but the manifest says "
                                  f"{want['size']}; the bundle was changed after it was written — rebuild it")
            blob = _read_member(zf, info, want["size"], f"{source}:{prefix}{name}")
            _compare(name, want, _digest(blob), source)
            data[name], sizes[name] = blob, len(blob)
    tok = _decode(data[manifest.tokenizer_file], manifest.tokenizer_file, source)
    return Bundle(source, manifest, data[manifest.model_file], tok, sizes)


def _zip_prefix(source: Path, infos: dict[str, zipfile.ZipInfo]) -> str:
    """'' when edgeft.json is at the zip's root, 'name/' when the zip holds one bundle folder."""
    if MANIFEST_NAME in infos:
        return ""
    nested = [n for n in infos if n.count("/") == 1 and n.endswith("/" + MANIFEST_NAME)]
    if len(nested) == 1:
        return nested[0][: -len(MANIFEST_NAME)]
    raise BundleError(f"{source} holds no {MANIFEST_NAME} at its root or in a single top-level folder: not a bundle")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, where: str) -> bytes:
    """Inflate one member, never more than ``limit`` bytes (+1 to notice a member that is longer)."""
    try:
        with zf.open(info) as f:
            blob = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as e:  # bad CRC, encrypted, …
        raise BundleError(f"{where} cannot be read: {e}") from None
    if len(blob) > limit:
        raise BundleError(f"{where} holds more than its declared {limit} bytes; refusing it")
    return blob


def _digest(blob: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}


def _compare(name: str, want: dict[str, Any], got: dict[str, Any], source: Path) -> None:
    """Raise naming the file and the first field that differs (size first: cheaper to read)."""
    if got["size"] != want["size"]:
        raise BundleError(f"{source}: {name} is {got['size']} bytes but the manifest says {want['size']}; "
                          "the bundle was changed after it was written — rebuild or re-download it")
    if got["sha256"] != want["sha256"]:
        raise BundleError(f"{source}: {name} has sha256 {got['sha256'][:16]}… but the manifest says "
                          f"{want['sha256'][:16]}…; the file was modified — rebuild or re-download the bundle")


def _decode(blob: bytes, name: str, source: Path) -> str:
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{source}: {name} is not UTF-8 text ({e})") from None
