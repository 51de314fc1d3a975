"""A store on object storage: ``s3://bucket/prefix`` or any fsspec URL.

Layout (docs/spec.md "Store layout"; docs/scale.md "Storage on object stores"):

    <url>/
      rowtrail.toml                          store format and settings (as in a local store)
      objects/sha256/ab/cdef…                immutable objects, named by the SHA-256 of their bytes
      journal/00000000000000000042.json      journal entry 42: its JCS line (no newline), one object each

The journal is the single source of truth, as in a local store; here each entry is its own object, and
**a write is one conditional put of entry N+1** (``If-None-Match: *``): of two writers that read the
same tip N, exactly one creates entry N+1, the other gets ``ConflictError`` and nothing of its write is
published (its uploaded objects are content-addressed orphans, reused when it runs again). There is no
HEAD file to move and no lock: the tip is the highest entry a listing returns (S3 lists strongly
consistently). Writes are refused on a server that ignores ``If-None-Match`` (probed once per process
with a throwaway key) and on fsspec protocols with no atomic create-if-absent: without one, two writers
could both publish entry N+1 — unless the store opts in to the **lease lock** (``ROWTRAIL_S3_LOCK=lease``
or ``lock = "lease"`` under ``[storage]`` in its ``rowtrail.toml``; ``backends/lease.py``): writers then
take turns through ``locks/journal.json`` (owner, lease, fencing token), safe under the timing
assumptions stated there.

Every reader and writer keeps a **local mirror** (``ROWTRAIL_CACHE``, default ``~/.cache/rowtrail``,
then one directory per store URL) laid out like a local store: ``objects/`` holds each object it has
read or written (downloads are hashed and must match their names, so the mirror is always valid:
objects never change), ``journal/`` the entries it has read (checked against the listing's ETags),
``tmp/`` and ``cache/`` as in a local store. ``object_path(digest)`` therefore returns a local file that
DuckDB and pyarrow read directly. ``verify`` reads the remote bytes, never the mirror.

Credentials and endpoint come from the standard AWS chain (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, ``~/.aws/config``), or from fsspec
storage options given to ``rt.open(url, storage_options=…)`` or as a JSON object in
``ROWTRAIL_STORAGE_OPTIONS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConflictError, StoreError
from . import local as _local
from .lease import LOCK_KEY, LeaseLock, LeaseSettings
from .local import OBJECT_DIR, LocalBackend, file_sha256

JOURNAL_DIR = "journal"
SEQ_DIGITS = 20
# Seconds a reader trusts its last look at the journal tip before listing again. Writes always look
# again (and the conditional put is what keeps them safe); this only bounds how stale a read can be.
try:
    HEAD_TTL = max(0.0, float(os.environ.get("ROWTRAIL_HEAD_TTL", "1.0")))
except ValueError:  # a bad setting must not break 'import rowtrail'; the default stands
    HEAD_TTL = 1.0
# Protocols whose fsspec implementation turns ``pipe_file(mode="create")`` into one atomic
# create-if-absent request (s3fs: PutObject with If-None-Match: *).
ATOMIC_CREATE = frozenset({"s3", "s3a"})
VERIFY_THREADS = 16  # objects verify downloads at once
FLUSH_BYTES = 64 << 20  # deferred uploads are sent in batches of about this many bytes
_PROBED: dict[str, bool] = {}  # per store URL, per process: does the server honour If-None-Match?
_PROBE_LOCK = threading.Lock()
LOCK_MODES = ("conditional", "lease")  # how writers keep each other out: the server's conditional put, or a lease lock


class _JournalView:
    """What a process knows of a store's journal: the entries up to the last tip it listed."""

    def __init__(self) -> None:
        self.mutex = threading.RLock()  # guards this view and the backends' deferred upload queues
        self.writer = threading.RLock()  # one write at a time per store and mirror in this process
        self.lines: list[bytes] = []
        self.etags: list[str] = []
        self.last_seq = -1
        self.validated = False  # has this process compared its whole mirror of the journal with a listing?
        self.looked_at = -1.0  # time.monotonic() of the last listing
        self.lease: LeaseLock | None = None  # in lease mode, while a write of this process holds the lock
        self.lease_depth = 0


_VIEWS: dict[tuple[str, str], _JournalView] = {}
_VIEWS_LOCK = threading.Lock()


def is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def default_cache_root() -> Path:
    env = os.environ.get("ROWTRAIL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rowtrail"


def storage_options_from_env() -> dict[str, Any]:
    text = os.environ.get("ROWTRAIL_STORAGE_OPTIONS")
    if not text:
        return {}
    try:
        opts = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise StoreError(f"ROWTRAIL_STORAGE_OPTIONS is not a JSON object ({exc})") from None
    if not isinstance(opts, dict):
        raise StoreError("ROWTRAIL_STORAGE_OPTIONS must be a JSON object of fsspec storage options")
    return opts


MIRROR_MARK = "store-url"  # in a mirror directory: the URL of the store it mirrors


def mirror_of(path: Path) -> str | None:
    """The store URL a local mirror directory belongs to (so that ``rt.open(store.path)`` opens the
    store itself), or None for any other path."""
    try:
        text = (path / MIRROR_MARK).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return text if is_url(text) and not (path / "rowtrail.toml").exists() else None


def _seq_key(seq: int) -> str:
    return f"{seq:0{SEQ_DIGITS}d}.json"


class ObjectStoreBackend:
    """Objects and journal of a store at an fsspec URL, read through a local mirror."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, cache_root: str | os.PathLike[str] | None = None):
        try:
            import fsspec
        except ImportError:  # pragma: no cover - depends on the install
            raise StoreError(f"stores at {url.split('://')[0]}:// URLs need fsspec and s3fs: pip install 'rowtrail[s3]'") from None
        self.url = url.rstrip("/")
        options = {**storage_options_from_env(), **(storage_options or {})}
        if self.url.split("://")[0] in ATOMIC_CREATE:
            options.setdefault("use_listings_cache", False)  # another writer's objects must show at once
        try:
            self.fs, base = fsspec.core.url_to_fs(self.url, **options)
        except ImportError as exc:
            raise StoreError(f"cannot open {self.url}: {exc}; for s3:// URLs: pip install 'rowtrail[s3]'") from None
        self.base = base.rstrip("/")
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        where = Path(cache_root) if cache_root is not None else default_cache_root()
        self.root = where / hashlib.sha256(self.url.encode()).hexdigest()[:24]
        self.mirror = LocalBackend(self.root)
        self._mark_mirror()
        # one view of the journal per store and mirror in a process, shared by every Store object on
        # it: a write through one is seen by all at once (other processes see it within HEAD_TTL)
        with _VIEWS_LOCK:
            self._v = _VIEWS.setdefault((self.url, str(self.root)), _JournalView())
        self._mutex = self._v.mutex
        self._writer = self._v.writer
        self._known_remote: set[str] = set()  # objects this process has seen or put on the remote
        self._deferred: list[tuple[str, bytes]] | None = None
        self._deferred_bytes = 0
        self._config_text: str | None = None  # the store's rowtrail.toml, as read by exists()
        self._lock_settings: tuple[str, LeaseSettings] | None = None

    def __repr__(self) -> str:
        return f"<ObjectStoreBackend {self.url}>"

    # -- layout ------------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def _object_key(self, digest: str) -> str:
        return self._key(OBJECT_DIR, digest[:2], digest[2:])

    @property
    def tmp_dir(self) -> Path:
        return self.mirror.tmp_dir

    def exists(self) -> bool:
        try:
            self._config_text = self._cat(self._key("rowtrail.toml")).decode("utf-8", "replace")
            return True
        except FileNotFoundError:
            return False
        except Exception as exc:  # botocore's connection and credential errors are not OSErrors
            raise StoreError(
                f"cannot reach {self.url} ({type(exc).__name__}: {exc}); check AWS_ENDPOINT_URL, the credentials "
                "(AWS_ACCESS_KEY_ID / AWS_PROFILE) and the network"
            ) from None

    def create(self, config_text: str) -> None:
        if os.environ.get("ROWTRAIL_S3_LOCK", "").strip().lower() == "lease":  # every later writer takes the lease too
            config_text += '\n[storage]\nlock = "lease"  # writers take turns through locks/journal.json (docs/scale.md)\n'
        self._config_text = config_text
        try:
            self._require_atomic_create()
            self.fs.pipe_file(self._key("rowtrail.toml"), config_text.encode())
        except FileNotFoundError:
            bucket = self.base.split("/")[0]
            raise StoreError(
                f"cannot create a store at {self.url}: no bucket '{bucket}'; create it first (e.g. 'aws s3 mb s3://{bucket}')"
            ) from None
        except PermissionError as exc:
            raise StoreError(f"cannot create a store at {self.url}: access denied ({exc}); check the credentials") from None
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / OBJECT_DIR).mkdir(parents=True, exist_ok=True)
        self.mirror.tmp_dir.mkdir(exist_ok=True)

    def _ensure_mirror(self) -> None:
        if not (self.root / OBJECT_DIR).is_dir():
            (self.root / OBJECT_DIR).mkdir(parents=True, exist_ok=True)

    def _mark_mirror(self) -> None:
        mark = self.root / MIRROR_MARK
        with contextlib.suppress(OSError):
            if not mark.is_file():
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = self.root / f".{MIRROR_MARK}.{uuid.uuid4().hex}.tmp"
                tmp.write_text(self.url + "\n")
                os.replace(tmp, mark)

    def _cat(self, key: str) -> bytes:
        """One key's bytes with one GET (s3fs otherwise asks the size first)."""
        extra = {"max_concurrency": 1} if self.protocol in ATOMIC_CREATE else {}
        return bytes(self.fs.cat_file(key, **extra))

    def _get_many(self, keys: list[str]) -> list[Any]:
        """The bytes of many keys (or the exception each raised), fetched concurrently, one GET each."""
        if not keys:
            return []
        extra = {"max_concurrency": 1} if self.protocol in ATOMIC_CREATE else {}  # else s3fs asks each size first
        return list(self.fs.cat_ranges(keys, None, None, on_error="return", **extra))

    # -- objects -----------------------------------------------------------------------------------
    def object_path(self, digest: str) -> Path:
        """A local file holding the object's bytes: the mirror's copy, downloaded (and checked
        against its name) on first use."""
        path = self.mirror.object_path(digest)
        if not path.is_file():
            self._download(digest, path)
        return path

    def _download(self, digest: str, dest: Path) -> None:
        self._ensure_mirror()
        tmp = self.mirror.new_tmp_path(".part")
        try:
            try:
                self.fs.get_file(self._object_key(digest), str(tmp))  # one streamed GET
            except FileNotFoundError:
                raise StoreError(f"object {digest} is missing from the store at {self.url}; run 'rowtrail verify'") from None
            got = file_sha256(tmp)
            if got != digest:
                raise StoreError(f"object {digest} at {self.url} is damaged: its bytes hash to {got}; run 'rowtrail verify'")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)  # another thread may have won the same download: same bytes
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._known_remote.add(digest)

    def prefetch(self, digests: Iterable[str]) -> None:
        """Download many objects the mirror lacks at once (a batch of concurrent GETs)."""
        missing = sorted({d for d in digests if not self.mirror.object_path(d).is_file()})
        for start in range(0, len(missing), 256):
            batch = missing[start : start + 256]
            try:
                got = self._get_many([self._object_key(d) for d in batch])
            except OSError:
                got = [None] * len(batch)
            for d, data in zip(batch, got):
                if isinstance(data, bytes) and hashlib.sha256(data).hexdigest() == d:
                    self.mirror.put_bytes(data)
                    self._known_remote.add(d)
                # anything else is fetched (and its error reported) by object_path when read

    def note_present(self, digests: Iterable[str]) -> None:
        """Objects a committed entry or manifest names: the store has them (they were uploaded before
        it was published), so ``put_bytes`` skips them (a commit uploads only the chunks that changed)."""
        self._known_remote.update(digests)

    def has_object(self, digest: str) -> bool:
        if digest in self._known_remote:
            return True
        found = bool(self.fs.exists(self._object_key(digest)))
        if found:
            self._known_remote.add(digest)
        return found

    @contextlib.contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Queue the uploads of many small objects and send them in concurrent batches, all before
        anything (a journal entry) can refer to them."""
        with self._mutex:
            outer = self._deferred is not None
            if not outer:
                self._deferred, self._deferred_bytes = [], 0
        try:
            with self.mirror.deferred_sync():
                yield
        except BaseException:
            if not outer:
                self._deferred = None  # nothing will refer to them; they stay in the mirror only
            raise
        if not outer:
            self._flush()
            self._deferred = None

    def _flush(self) -> None:
        with self._mutex:
            queue, self._deferred, self._deferred_bytes = self._deferred or [], [], 0
        if queue:
            self.fs.pipe({self._object_key(d): data for d, data in queue})
            self._known_remote.update(d for d, _ in queue)

    def put_bytes(self, data: bytes) -> str:
        digest = self.mirror.put_bytes(data)
        if digest in self._known_remote:
            return digest
        with self._mutex:
            if self._deferred is not None:
                self._deferred.append((digest, data))
                self._deferred_bytes += len(data)
                full = self._deferred_bytes >= FLUSH_BYTES
            else:
                full = None
        if full is None:
            self.fs.pipe_file(self._object_key(digest), data)  # same name, same bytes: a repeat is harmless
            self._known_remote.add(digest)
        elif full:
            self._flush()
        return digest

    def put_file(self, path: str | os.PathLike[str], digest: str | None = None) -> str:
        """Upload a finished temporary file under its digest (unless the store has it) and keep it
        in the mirror."""
        self._ensure_mirror()
        digest = self.mirror.put_file(path, digest)
        if not self.has_object(digest):
            self.fs.put_file(str(self.mirror.object_path(digest)), self._object_key(digest))
            self._known_remote.add(digest)
        return digest

    def delete_object(self, digest: str) -> None:
        """Erase an object's bytes from the store and from this mirror (a purge)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._object_key(digest))
        self._known_remote.discard(digest)
        self.mirror.delete_object(digest)

    def read_bytes(self, digest: str) -> bytes:
        return self.object_path(digest).read_bytes()

    def iter_objects(self) -> Iterator[str]:
        """Every object on the remote (not the mirror), by listing."""
        prefix = self._key(OBJECT_DIR)
        self.fs.invalidate_cache(prefix)
        try:
            found = self.fs.find(prefix)
        except FileNotFoundError:
            return
        for name in sorted(found):
            rel = name[len(prefix) :].strip("/").split("/")
            if len(rel) == 2 and len(rel[0]) == 2:
                yield rel[0] + rel[1]

    def hash_object(self, digest: str) -> str:
        """SHA-256 of the object's bytes as the store holds them now: downloaded afresh (one GET),
        never taken from the mirror; a good copy the mirror lacks is kept."""
        tmp = self.mirror.new_tmp_path(".verify")
        try:
            try:
                self.fs.get_file(self._object_key(digest), str(tmp))
            except FileNotFoundError:
                return ""  # deleted since it was listed: no bytes hash to its name
            got = file_sha256(tmp)
            dest = self.mirror.object_path(digest)
            if got == digest and not dest.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
            return got
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def hash_objects(self, digests: Iterable[str]) -> Iterator[tuple[str, str]]:
        """(digest, SHA-256 of the remote bytes) for each object, in order, downloaded by
        VERIFY_THREADS requests in flight (each a temporary file, so memory stays flat)."""
        from concurrent.futures import ThreadPoolExecutor

        todo = list(digests)
        with ThreadPoolExecutor(max_workers=VERIFY_THREADS) as pool:
            for start in range(0, len(todo), 4 * VERIFY_THREADS):  # a bounded window of futures
                batch = todo[start : start + 4 * VERIFY_THREADS]
                yield from zip(batch, pool.map(self.hash_object, batch))

    def ensure_tmp(self) -> Path:
        self._ensure_mirror()
        return self.mirror.ensure_tmp()

    def new_tmp_path(self, suffix: str = "") -> Path:
        self._ensure_mirror()
        return self.mirror.new_tmp_path(suffix)

    def cache_get(self, name: str) -> bytes | None:
        return self.mirror.cache_get(name)

    def cache_put(self, name: str, data: bytes) -> None:
        self.mirror.cache_put(name, data)

    def clean_tmp(self, older_than: float = 24 * 3600) -> int:
        return self.mirror.clean_tmp(older_than)

    # -- journal -----------------------------------------------------------------------------------
    def _journal_mirror(self) -> Path:
        return self.root / JOURNAL_DIR

    def _list_journal(self, after: int) -> list[tuple[int, str]]:
        """(seq, etag) of the remote entries past ``after``, in order (one listing request per 1,000
        entries; on S3 only the new ones are listed)."""
        prefix = self._key(JOURNAL_DIR)
        found: list[tuple[int, str]] = []
        if self.protocol in ATOMIC_CREATE:
            bucket, _, key_prefix = prefix.partition("/")
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key_prefix + "/"}
            if after >= 0:
                kwargs["StartAfter"] = f"{key_prefix}/{_seq_key(after)}"
            while True:
                page = self.fs.call_s3("list_objects_v2", **kwargs)
                for obj in page.get("Contents", []):
                    name = obj["Key"].rsplit("/", 1)[-1]
                    if name.endswith(".json") and name[:-5].isdigit():
                        found.append((int(name[:-5]), obj.get("ETag", "").strip('"')))
                if not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        else:
            self.fs.invalidate_cache(prefix)
            try:
                infos = self.fs.ls(prefix, detail=True)
            except FileNotFoundError:
                infos = []
            for info in infos:
                name = info["name"].rsplit("/", 1)[-1]
                if name.endswith(".json") and name[:-5].isdigit() and int(name[:-5]) > after:
                    tag = info.get("ETag") or info.get("etag") or info.get("md5") or f"size-{info.get('size')}"
                    found.append((int(name[:-5]), str(tag).strip('"')))
        return sorted(found)

    def _fetch_entries(self, items: list[tuple[int, str]]) -> list[bytes]:
        """The bytes of the listed entries: from the journal mirror when its copy carries the same
        ETag, else from the remote (and then mirrored)."""
        mirror = self._journal_mirror()
        out: dict[int, bytes] = {}
        need = []
        for seq, etag in items:
            local = mirror / f"{_seq_key(seq)[:-5]}.{_safe(etag)}"
            try:
                out[seq] = local.read_bytes()
            except FileNotFoundError:
                need.append((seq, etag))
        if need:
            keys = {self._key(JOURNAL_DIR, _seq_key(seq)): (seq, etag) for seq, etag in need}
            got = dict(zip(keys, self._get_many(list(keys))))
            mirror.mkdir(parents=True, exist_ok=True)
            for key, (seq, etag) in keys.items():
                data = got.get(key)
                if not isinstance(data, bytes):
                    raise StoreError(f"journal entry {seq} of {self.url} could not be read ({data!r}); run 'rowtrail verify'")
                out[seq] = data
                for stale in mirror.glob(f"{_seq_key(seq)[:-5]}.*"):
                    stale.unlink(missing_ok=True)
                tmp = mirror / f".{seq}.{uuid.uuid4().hex}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, mirror / f"{_seq_key(seq)[:-5]}.{_safe(etag)}")
        return [out[seq] for seq, _ in items]

    def _refresh(self, force: bool = False) -> None:
        """Bring the journal view up to the remote tip (at most every HEAD_TTL seconds unless forced)."""
        with self._mutex:
            now = time.monotonic()
            if not force and self._v.looked_at >= 0 and now - self._v.looked_at < HEAD_TTL:
                return
            if not self._v.validated:
                items = self._list_journal(-1)
                lines = self._fetch_entries(items)
                self._v.lines, self._v.etags, self._v.last_seq = [], [], -1
                self._extend(items, lines)
                self._v.validated = True
            else:
                items = self._list_journal(self._v.last_seq)
                if items:
                    self._extend(items, self._fetch_entries(items))
            self._v.looked_at = now

    def _extend(self, items: list[tuple[int, str]], lines: list[bytes]) -> None:
        # every listed entry, in order: a gap (a removed entry) is damage that verify names by its
        # sequence numbers, not something to hide by stopping before it
        for (seq, etag), line in zip(items, lines):
            self._v.lines.append(line)
            self._v.etags.append(etag)
            self._v.last_seq = seq
            self._forget_purged(line)

    def _forget_purged(self, line: bytes) -> None:
        """A purge erases content; drop this mirror's copy of what it erased, too."""
        if b'"kind":"purge"' not in line:
            return
        entry = orjson.loads(line)
        erased = [s.get("old_content") for s in entry.get("segments") or []] + [f.get("old_block") for f in entry.get("features") or []]
        for digest in erased:
            if digest:
                self.mirror.delete_object(digest)

    def read_head(self) -> dict | None:
        """The tip: ``{"seq", "digest", "bytes"}`` as in a local store's HEAD.json, derived from the
        listing (``bytes``: the length of the entries joined by newlines)."""
        self._refresh()
        with self._mutex:
            if not self._v.lines:
                return None
            return {
                "seq": self._v.last_seq,
                "digest": hashlib.sha256(self._v.lines[-1]).hexdigest(),
                "bytes": sum(len(x) + 1 for x in self._v.lines),
            }

    def read_journal(self) -> tuple[list[bytes], bytes]:
        """The committed entries up to the tip; a put is atomic, so nothing lies past it."""
        self._refresh()
        with self._mutex:
            return list(self._v.lines), b""

    def journal_bytes(self) -> bytes:
        """Every entry as the remote holds it now (no mirror), joined as a local journal.jsonl, for
        verify. A removed entry shows as a gap in the sequence numbers; an edited one as a broken
        chain."""
        items = self._list_journal(-1)
        keys = [self._key(JOURNAL_DIR, _seq_key(seq)) for seq, _ in items]
        data = self._get_many(keys)
        with self._mutex:  # the view verify's read_head() answers from is this one
            self._v.validated = False
            self._refresh(force=True)
        return b"".join(d + b"\n" for d in data if isinstance(d, bytes))

    def append_journal(self, line: bytes, seq: int, digest: str) -> None:
        """Publish entry ``seq``: one conditional put, which fails if any writer created it first. In
        lease mode the put is fenced first (this writer still holds the lock, and no entry ``seq``
        exists) and read back after, since the server may ignore the condition."""
        key = self._key(JOURNAL_DIR, _seq_key(seq))
        lease = self._lock_mode()[0] == "lease"
        if lease:
            if self._v.lease is None:
                raise StoreError(f"a journal entry of {self.url} was written outside the store's lock (lease mode)")
            self._v.lease.check()
            if self.fs.exists(key):
                self._conflict(seq)
        else:
            self._require_atomic_create()
        try:
            self.fs.pipe_file(key, line, mode="create")
        except FileExistsError:
            # a 412 can also answer a retry of our own put whose first response was lost: then it is published
            if not self._holds(key, line):
                self._conflict(seq)
        else:
            if lease:  # the server may have ignored the condition: read the entry back
                try:
                    back = self._cat(key)
                except (OSError, FileNotFoundError) as exc:
                    raise StoreError(
                        f"journal entry {seq} of {self.url} was sent but could not be read back ({exc}); "
                        "see 'rowtrail log' for whether this write was published before running it again"
                    ) from None
                if back != line:  # overwritten at once: a writer outside the lease's assumptions
                    self._conflict(seq)
        etag = hashlib.md5(line, usedforsecurity=False).hexdigest()  # what S3 lists for a plain put
        with contextlib.suppress(OSError):
            mirror = self._journal_mirror()
            mirror.mkdir(parents=True, exist_ok=True)
            tmp = mirror / f".{seq}.{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(line)
            os.replace(tmp, mirror / f"{_seq_key(seq)[:-5]}.{_safe(etag)}")
        with self._mutex:
            if self._v.last_seq + 1 == seq:
                self._v.lines.append(line)
                self._v.etags.append(etag)
                self._v.last_seq = seq
            else:
                self._v.looked_at = -1.0  # our view was behind; list again on the next read

    def _conflict(self, seq: int) -> None:
        self._v.looked_at = -1.0
        raise ConflictError(
            f"the store at {self.url} advanced while this write ran: another writer published journal entry {seq} "
            "first, so nothing of this write was committed (staged work already in the store is untouched). "
            "Run the command again: it starts from the new tip and reuses the objects already uploaded "
            "(see 'rowtrail status' / 'rowtrail log')"
        )

    def _holds(self, key: str, line: bytes) -> bool:
        try:
            return bool(self._cat(key) == line)
        except OSError:
            return False

    @contextlib.contextmanager
    def lock(self, wait: float | None = None) -> Iterator[None]:
        """Conditional mode: no lock on object storage, writers never wait, the conditional put of the
        next entry decides. Lease mode: hold the store's lease lock (``locks/journal.json``) for the
        write. Either way threads of one process sharing this backend take turns, and the tip is read
        afresh once the write may start."""
        with self._writer:
            if self._lock_mode()[0] != "lease":
                self._refresh(force=True)
                yield
                return
            v = self._v
            if v.lease_depth == 0:
                lease = self._new_lease()
                lease.acquire(_local.LOCK_WAIT_SECONDS if wait is None else wait)
                v.lease = lease
            v.lease_depth += 1
            try:
                self._refresh(force=True)
                yield
            finally:
                v.lease_depth -= 1
                if v.lease_depth == 0 and v.lease is not None:
                    held, v.lease = v.lease, None
                    with contextlib.suppress(Exception):  # a release that fails leaves the lease to run out
                        held.release()

    def _new_lease(self) -> LeaseLock:
        self._require_writable_protocol(lease=True)
        key = self._key(LOCK_KEY)

        def read() -> bytes | None:
            try:
                return self._cat(key)
            except FileNotFoundError:
                return None

        def write(data: bytes) -> None:
            self.fs.pipe_file(key, data)

        return LeaseLock(read, write, f"{self.url}/{LOCK_KEY}", self._lock_mode()[1])

    def _lock_mode(self) -> tuple[str, LeaseSettings]:
        """How this store's writers keep each other out, and the lease timings: ``ROWTRAIL_S3_LOCK``,
        ``ROWTRAIL_S3_LEASE`` and ``ROWTRAIL_S3_LEASE_SETTLE`` when set, else ``lock``,
        ``lease_seconds`` and ``settle_seconds`` under ``[storage]`` in the store's rowtrail.toml, else
        conditional puts (and a 30 s lease settling 1 s)."""
        if self._lock_settings is None:
            import tomllib

            if self._config_text is None:
                self.exists()
            try:
                storage = tomllib.loads(self._config_text or "").get("storage") or {}
            except tomllib.TOMLDecodeError as exc:
                raise StoreError(f"{self.url}/rowtrail.toml is not valid TOML ({exc})") from None
            mode = (os.environ.get("ROWTRAIL_S3_LOCK") or str(storage.get("lock") or "conditional")).strip().lower()
            if mode not in LOCK_MODES:
                raise StoreError(
                    f"unknown lock mode {mode!r} (ROWTRAIL_S3_LOCK or [storage] lock in rowtrail.toml): use 'conditional' or 'lease'"
                )
            try:
                lease = float(os.environ.get("ROWTRAIL_S3_LEASE") or storage.get("lease_seconds") or LeaseSettings.lease)
                settle = float(os.environ.get("ROWTRAIL_S3_LEASE_SETTLE") or storage.get("settle_seconds") or LeaseSettings.settle)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"lease timings must be numbers of seconds ({exc})") from None
            self._lock_settings = (mode, LeaseSettings(lease, settle))
        return self._lock_settings

    # -- conditional writes ------------------------------------------------------------------------
    def _require_writable_protocol(self, lease: bool = False) -> None:
        if not lease and self.protocol not in ATOMIC_CREATE:
            raise StoreError(
                f"cannot write to a store at {self.protocol}:// URLs: rowtrail publishes a write with an atomic "
                "create-if-absent, which it knows how to do on S3-compatible storage (s3://) only; "
                "this store can be read, not written (or opt in to the lease lock: ROWTRAIL_S3_LOCK=lease, docs/scale.md)"
            )

    def _require_atomic_create(self) -> None:
        if self._lock_mode()[0] == "lease":
            self._require_writable_protocol(lease=True)
            return  # the lease lock keeps writers apart; the server need not honour If-None-Match
        self._require_writable_protocol()
        with _PROBE_LOCK:
            ok = _PROBED.get(self.url)
            if ok is None:
                ok = _PROBED[self.url] = self._probe_conditional_put()
        if not ok:
            raise StoreError(
                f"the server behind {self.url} ignores If-None-Match on PutObject, so two writers could both "
                "publish the same journal entry; rowtrail writes only to servers with conditional writes "
                "(AWS S3, recent MinIO, Cloudflare R2, moto), or, where every writer opts in, with a lease lock "
                '(ROWTRAIL_S3_LOCK=lease, or lock = "lease" under [storage] in the store\'s rowtrail.toml; '
                "safe under timing assumptions, see docs/scale.md); this store can be read, not written"
            )

    def _probe_conditional_put(self) -> bool:
        """Create a throwaway key twice with If-None-Match: *; the server honours it if the second
        put fails."""
        key = self._key("tmp", f"probe-{uuid.uuid4().hex}")
        try:
            self.fs.pipe_file(key, b"1", mode="create")
            try:
                self.fs.pipe_file(key, b"2", mode="create")
            except FileExistsError:
                return True
            return False
        finally:
            with contextlib.suppress(OSError):
                self.fs.rm_file(key)


def _safe(etag: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in etag) or "none"
