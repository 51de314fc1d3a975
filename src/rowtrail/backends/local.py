"""A store in a local directory.

Layout (docs/spec.md, "Store layout"):

    <store>/
      rowtrail.toml            store format and settings
      objects/sha256/ab/cdef…  immutable objects, named by the SHA-256 of their bytes
      journal.jsonl            the journal: one JCS entry a line, each naming its predecessor's digest
      HEAD.json                {"seq", "digest", "bytes"}: the last committed journal entry
      lock                     fcntl.flock target; held only while one write runs
      tmp/                     staging for objects being written

A write appends its journal line (fsync), then replaces ``HEAD.json`` by write-temp/fsync/rename. The
rename is the commit point: readers never look past ``HEAD.json``, so a crash before it leaves the store
as before (the orphan tail is cut off by the next writer) and a crash after it leaves the store as after.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from ..errors import StoreError, StoreLockedError

OBJECT_DIR = "objects/sha256"
LOCK_WAIT_SECONDS = float(os.environ.get("ROWTRAIL_LOCK_TIMEOUT", "60"))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend:
    """Objects, journal and lock of a store in a directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    # -- layout ------------------------------------------------------------------------------------
    @property
    def journal_path(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def head_path(self) -> Path:
        return self.root / "HEAD.json"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def exists(self) -> bool:
        return (self.root / "rowtrail.toml").is_file() and self.journal_path.exists()

    def create(self, config_text: str) -> None:
        (self.root / OBJECT_DIR).mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)
        (self.root / "lock").touch()
        self.journal_path.touch()
        self._write_atomic(self.root / "rowtrail.toml", config_text.encode())

    # -- objects -----------------------------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        return self.root / OBJECT_DIR / digest[:2] / digest[2:]

    def has_object(self, digest: str) -> bool:
        return self.object_path(digest).is_file()

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Write many objects without an fsync each, then make them all durable with one syncfs —
        before anything (a journal entry) can refer to them."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False
        _syncfs(self.root)

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        dest = self.object_path(digest)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._write_atomic(dest, data, mode=0o444)
        return digest

    def put_file(self, path: str | os.PathLike[str], digest: str | None = None) -> str:
        """Move a finished temporary file into the object store under its digest."""
        path = Path(path)
        if digest is None:
            digest = file_sha256(path)
        dest = self.object_path(digest)
        if dest.exists():
            path.unlink()
            return digest
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(path, 0o444)
        os.replace(path, dest)
        _fsync_dir(dest.parent)
        return digest

    def delete_object(self, digest: str) -> None:
        """Erase an object's bytes (a purge: only after a journal entry stopped naming it as current)."""
        path = self.object_path(digest)
        try:
            os.chmod(path, 0o644)
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def prefetch(self, digests: Iterable[str]) -> None:
        """Objects about to be read (a no-op here: they are local files already)."""

    def note_present(self, digests: Iterable[str]) -> None:
        """Objects a committed entry names, hence in the store (a no-op here: put_bytes looks)."""

    def hash_object(self, digest: str) -> str:
        """SHA-256 of the object's bytes as the store holds them now."""
        return file_sha256(self.object_path(digest))

    def hash_objects(self, digests: Iterable[str]) -> Iterator[tuple[str, str]]:
        """(digest, SHA-256 of the stored bytes) for each object, in order."""
        for digest in digests:
            yield digest, self.hash_object(digest)

    def read_bytes(self, digest: str) -> bytes:
        try:
            return self.object_path(digest).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"object {digest} is missing from the store; run 'rowtrail verify'") from None

    def iter_objects(self) -> Iterator[str]:
        base = self.root / OBJECT_DIR
        if not base.exists():
            return
        for sub in sorted(base.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    yield sub.name + f.name

    def ensure_tmp(self) -> Path:
        self.tmp_dir.mkdir(exist_ok=True)
        return self.tmp_dir

    def new_tmp_path(self, suffix: str = "") -> Path:
        self.tmp_dir.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, suffix=suffix)
        os.close(fd)
        return Path(name)

    # -- derived caches --------------------------------------------------------------------------------
    # Facts computed from immutable objects (e.g. the JSON kinds of a content table's fields), kept
    # under cache/ so later runs skip the work. Never verified, never authoritative: deleting cache/
    # only costs time.
    def cache_get(self, name: str) -> bytes | None:
        try:
            return (self.root / "cache" / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def cache_put(self, name: str, data: bytes) -> None:
        path = self.root / "cache" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    # -- journal -----------------------------------------------------------------------------------
    def read_head(self) -> dict | None:
        try:
            return orjson.loads(self.head_path.read_bytes())
        except FileNotFoundError:
            return None

    def journal_bytes(self) -> bytes:
        """The whole journal file as stored (committed part and any residue past HEAD), for verify."""
        return self.journal_path.read_bytes() if self.journal_path.exists() else b""

    def read_journal(self) -> tuple[list[bytes], bytes]:
        """The committed journal lines (up to HEAD) and any bytes past them (an interrupted write)."""
        head = self.read_head()
        data = self.journal_path.read_bytes() if self.journal_path.exists() else b""
        limit = head["bytes"] if head else 0
        body, tail = data[:limit], data[limit:]
        lines = body.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return lines, tail

    def append_journal(self, line: bytes, seq: int, digest: str) -> None:
        """Append one entry and move HEAD to it; the caller holds the lock."""
        head = self.read_head()
        committed = head["bytes"] if head else 0
        with open(self.journal_path, "r+b") as fh:
            fh.truncate(committed)  # drop the residue of an interrupted write, if any
            fh.seek(committed)
            fh.write(line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        new_head = {"seq": seq, "digest": digest, "bytes": committed + len(line) + 1}
        self._write_atomic(self.head_path, orjson.dumps(new_head))

    @contextlib.contextmanager
    def lock(self, wait: float | None = None) -> Iterator[None]:
        """Exclusive writer lock (fcntl.flock: released by the kernel when the process dies)."""
        wait = LOCK_WAIT_SECONDS if wait is None else wait
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise StoreLockedError(
                            f"store {self.root} is locked by another writer (waited {wait:g} s); "
                            "retry when it finishes, or raise ROWTRAIL_LOCK_TIMEOUT"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def clean_tmp(self, older_than: float = 24 * 3600) -> int:
        """Remove temporary files a killed writer left behind (only old ones: a running ingest's
        files are young); called under the lock. Returns how many were removed."""
        if not self.tmp_dir.exists():
            return 0
        cutoff, n = time.time() - older_than, 0
        for f in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                if f.is_file() and f.stat().st_mtime < cutoff:
                    f.unlink()
                    n += 1
        return n

    # -- helpers -----------------------------------------------------------------------------------
    def _write_atomic(self, dest: Path, data: bytes, mode: int = 0o644) -> None:
        self.tmp_dir.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp_dir)
        deferred = getattr(self, "_deferred", False)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if not deferred:
                    os.fsync(fh.fileno())
            os.chmod(name, mode)
            os.replace(name, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        if not deferred:
            _fsync_dir(dest.parent)


def _syncfs(path: Path) -> None:
    """Flush the file system holding ``path`` (Linux syncfs; elsewhere a full sync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(fd) == 0:
                return
        except (OSError, AttributeError):
            pass
        os.sync()
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
