"""Exporters: write a corpus version — its rows, or a document about it — in a named format.

The contract. An exporter is an object registered here under its ``name`` with

- ``name``: the format as typed on the command line (``rowtrail export NAME V -o PATH``); lowercase.
- ``suffixes``: endings of output paths it writes (``(".parquet",)``, ``(".jsonl", ".jsonl.gz")``),
  longest match wins in ``for_path``; empty for a format that writes a directory with no suffix.
- ``description``: one line, shown in help and in the unknown-format error.
- ``writes_stdout``: True when ``path=None`` means "write to stdout" (single documents); False when
  the format needs a path (corpus files, directories).
- ``write(store, version, path, *, overwrite=False, progress=None, **options) -> ExportResult``:
  ``version`` is a ref (tag, id, ``HEAD~N``) or a ``Version``. ``write`` must

  1. check every option before writing anything, and reject unknown options and bad values with an
     ``ExportError`` that names the accepted ones;
  2. refuse an existing ``path`` unless ``overwrite`` (``ExportExistsError``, naming ``--force``);
  3. never leave partial output at ``path``: write under a temporary name in the target's directory
     and rename it into place (``atomic_output``), so a crash leaves the old state or the new one;
  4. report long work through ``progress(stage, done, total)`` when given;
  5. raise ``RowtrailError`` subclasses for anything the user can fix (a missing optional library
     gives the ``pip install 'rowtrail[extra]'`` that fixes it), and import heavy optional libraries
     only inside ``write``;
  6. return an ``ExportResult``: what was written (files with sizes and SHA-256), how many rows, and
     which version (id and digests), so the caller can print or record it.

Exporters register with ``register`` when their module is imported; ``rowtrail.exports`` imports the
built-in ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..errors import ExportError, ExportExistsError

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    format: str
    path: str | None  # None: written to stdout
    rows: int
    bytes: int
    version_id: str
    tag: str | None
    content_id: str
    merkle_root: str
    files: list[dict[str, Any]] = field(default_factory=list)  # {"path", "bytes", "sha256", and "rows" when known}
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "rows": self.rows,
            "bytes": self.bytes,
            "version_id": self.version_id,
            "tag": self.tag,
            "content_id": self.content_id,
            "merkle_root": self.merkle_root,
            "files": self.files,
            **self.details,
        }


class Exporter:
    """Base class for exporters (see the module docstring for the contract)."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    writes_stdout: ClassVar[bool] = False

    def write(self, store: Store, version: str | Version, path: str | os.PathLike[str] | None, *, overwrite: bool = False, progress: Progress | None = None, **options: Any) -> ExportResult:
        raise NotImplementedError


_REGISTRY: dict[str, Exporter] = {}
E = TypeVar("E", bound=Exporter)


def register(exporter: type[E]) -> type[E]:
    """Class decorator: register an exporter under its ``name`` (a second one with the name is an error)."""
    name = exporter.name
    if not name or name != name.lower():
        raise ValueError(f"exporter name must be lowercase and non-empty, not {name!r}")
    if name in _REGISTRY and type(_REGISTRY[name]) is not exporter:
        raise ValueError(f"an exporter named {name!r} is already registered ({type(_REGISTRY[name]).__qualname__})")
    _REGISTRY[name] = exporter()
    return exporter


def formats() -> list[str]:
    """Names of the registered formats, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Exporter:
    """The exporter for a format name; an ``ExportError`` listing the known ones if there is none."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        known = ", ".join(f"{n} ({_REGISTRY[n].description})" if _REGISTRY[n].description else n for n in formats())
        raise ExportError(f"unknown export format '{name}'; known formats: {known}") from None


def for_path(path: str | os.PathLike[str]) -> Exporter | None:
    """The exporter whose suffix ends ``path`` (the longest match), or None."""
    text = os.fspath(path).lower()
    best: tuple[int, Exporter] | None = None
    for exp in _REGISTRY.values():
        for suffix in exp.suffixes:
            if text.endswith(suffix.lower()) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), exp)
    return best[1] if best else None


def resolve_version(store: Store, version: str | Version, corpus: str = "main") -> Version:
    from ..versions.version import Version

    return version if isinstance(version, Version) else store.version(version, corpus)


# -- writing files -----------------------------------------------------------------------------------


def check_target(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """``path`` as a Path, after refusing an existing one unless ``overwrite``."""
    target = Path(path).expanduser()
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise ExportExistsError(f"{target} already exists; choose another path or pass --force (overwrite=True) to replace it")
    return target


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """A temporary path next to ``path`` (nothing exists there yet): write a file or a directory at
    it, and on success it is renamed to ``path``; on failure it is removed. An existing ``path`` is
    refused unless ``overwrite``; then it is replaced only once the new output is complete."""
    target = check_target(path, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.rowtrail-tmp-{secrets.token_hex(4)}"
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise ExportError(f"the exporter wrote nothing for {target}")
        _publish(tmp, target, overwrite)
    finally:
        remove_path(tmp)


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    exists = target.exists() or target.is_symlink()
    if exists and not overwrite:  # created while we wrote
        raise ExportExistsError(f"{target} appeared while the export ran; nothing was replaced (pass --force to replace it)")
    if not exists:
        os.rename(tmp, target)
        return
    if tmp.is_file() and not target.is_dir():
        os.replace(tmp, target)  # atomic for a file over a file
        return
    # A directory (or a change of kind) cannot be swapped in one rename: move the old one aside first,
    # so the path never holds a mix of old and new output.
    old = target.parent / f".{target.name}.rowtrail-old-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)
        raise
    remove_path(old)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


class HashingWriter:
    """A write-only file wrapper that counts and hashes the bytes that reach the file."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._hash = hashlib.sha256()
        self.bytes = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._fh.write(view)
        self._hash.update(view)
        self.bytes += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self._fh.flush()

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return bool(self._fh.closed)

    def close(self) -> None:  # the owner closes the underlying file
        pass

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()
