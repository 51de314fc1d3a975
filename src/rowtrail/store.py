"""The Store facade: binds the verbs in ``ops/`` to one store and holds the writer lock while one
write runs (never while a ``Store`` object merely exists).

State is derived from the journal on demand and re-read whenever ``HEAD.json`` moves, so two
``Store`` objects (or processes) on one store always see each other's committed writes.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .backends.local import LocalBackend
from .backends.objectstore import is_url, mirror_of
from .errors import StoreExistsError, StoreNotFoundError
from .hashing import ID_DTYPE
from .segments import ids_column_to_numpy
from .sources.registry import SourceRegistry
from .versions.journal import State, encode_entry, now_rfc3339
from .versions.manifest import ChunkCache

if TYPE_CHECKING:
    from .backends.objectstore import ObjectStoreBackend
    from .ops.apply import ApplyReport
    from .ops.bisect import BisectReport
    from .ops.ingest import IngestReport
    from .ops.runs import Run
    from .ops.verify import VerifyReport
    from .versions.version import Version

DEFAULT_STORE = ".rowtrail"
STORE_FORMAT = 1
COLUMN_CACHE_BYTES = 256 << 20  # whole-segment columns kept for reuse (``Store.segment_column``)
CONFIG_TEXT = f'# rowtrail store\nformat = {STORE_FORMAT}\n'


def resolve_path(path: str | os.PathLike[str] | None) -> Path | str:
    """Where a store lives: a local directory (a ``Path``), or an fsspec URL such as
    ``s3://bucket/prefix`` (a ``str``)."""
    if path is None:
        path = os.environ.get("ROWTRAIL_STORE") or DEFAULT_STORE
    text = str(path)
    if isinstance(path, PurePath) and re.match(r"^[a-z][a-z0-9+.-]*:/[^/]", text) and not text.startswith("file:"):
        text = text.replace(":/", "://", 1)  # a URL that went through Path() lost a slash
    if is_url(text):
        return text.rstrip("/")
    local = Path(text.removeprefix("file://")).expanduser()
    remote = mirror_of(local)
    return remote if remote is not None else local


def _make_backend(where: Path | str, storage_options: dict[str, Any] | None) -> LocalBackend | ObjectStoreBackend:
    if isinstance(where, Path):
        return LocalBackend(where)
    from .backends.objectstore import ObjectStoreBackend

    return ObjectStoreBackend(where, storage_options)


def init(path: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None) -> Store:
    """Create a store (default ``./.rowtrail``; or at an fsspec URL such as ``s3://bucket/prefix``) and
    return it."""
    where = resolve_path(path)
    backend = _make_backend(where, storage_options)
    if backend.exists():
        raise StoreExistsError(f"a store already exists at {where}; open it with rt.open({str(where)!r})")
    if isinstance(where, Path):
        where.mkdir(parents=True, exist_ok=True)
    backend.create(CONFIG_TEXT)
    store = Store(where, storage_options=storage_options, _backend=backend)
    with store._write() as state:
        store._append(state, {"kind": "init", "format": STORE_FORMAT})
    return store


def open(path: str | os.PathLike[str] | None = None, storage_options: dict[str, Any] | None = None) -> Store:  # noqa: A001 - public name fixed by the design
    """Open an existing store (a directory, or an fsspec URL such as ``s3://bucket/prefix``)."""
    return Store(resolve_path(path), storage_options=storage_options)


class Store:
    """A rowtrail store: sources, rows, versions and the journal that records them."""

    def __init__(self, path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, _backend: Any = None):
        where = resolve_path(path)
        self.backend = _backend or _make_backend(where, storage_options)
        # ``url``: where the store lives; ``path``: a local directory laid out like a store (for an
        # object store, its read-through mirror, whose objects/ DuckDB and pyarrow read)
        self.url = str(where)
        self.path = where if isinstance(where, Path) else self.backend.root
        if not self.backend.exists():
            raise StoreNotFoundError(f"no rowtrail store at {self.url}; create one with 'rowtrail init' (or pass --store PATH)")
        self._state: State | None = None
        self._state_key: Any = None
        self.chunks = ChunkCache(self.backend)  # type: ignore[arg-type]  # any backend: it reads objects only
        self._columns: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._manifests: dict[str, dict[str, Any]] = {}
        self._applied: dict[str, list[Any]] = {}  # steps this process applied, per corpus (user functions live only here)
        self.sources = SourceRegistry(self)

    def __repr__(self) -> str:
        return f"<rowtrail.Store {self.url}>"

    # -- state and writes --------------------------------------------------------------------------
    @property
    def state(self) -> State:
        head = self.backend.read_head()
        key = (head or {}).get("digest")
        if self._state is None or key != self._state_key:
            lines, _tail = self.backend.read_journal()
            self._state = State.replay(lines)
            self._state_key = key
        return self._state

    @contextlib.contextmanager
    def _write(self) -> Iterator[State]:
        """Hold the lock for one write, with the state as of the latest committed entry."""
        with self.backend.lock():
            self._state = None
            self.backend.clean_tmp()
            yield self.state

    def _append(self, state: State, entry: dict[str, Any]) -> dict[str, Any]:
        full = {"seq": state.seq + 1, "prev": state.head_digest, "at": now_rfc3339(), **entry}
        line, digest = encode_entry(full)
        self.backend.append_journal(line, full["seq"], digest)
        state.apply(orjson.loads(line), digest)
        self._state_key = digest
        return full

    # -- segments and chunks -----------------------------------------------------------------------
    def segment_column(self, seg: int, column: str) -> np.ndarray:
        """A whole column of a segment's provenance table (32-byte columns as 'S32'), cached."""
        key = (seg, column)
        hit = self._columns.get(key)
        if hit is not None:
            self._columns.move_to_end(key)
            return hit
        segment = self.state.segments[seg]
        col = pq.read_table(self.backend.object_path(segment.provenance), columns=[column]).column(column)
        if pa.types.is_fixed_size_binary(col.type):
            arr = ids_column_to_numpy(col)
        elif pa.types.is_string(col.type):
            enc = col.combine_chunks().dictionary_encode()
            values = np.array([*enc.dictionary.to_pylist(), None], dtype=object)  # the last one stands for null
            arr = values[enc.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False)]
        else:
            arr = col.to_numpy()
        self._remember(key, arr)
        return arr

    def _remember(self, key: tuple[int, str], value: Any) -> None:
        """Cache a whole-segment column, evicting the least recently used past ``COLUMN_CACHE_BYTES``
        (a count bound would let a 20 M-row corpus cache every segment's row ids: 640 MB)."""
        self._columns[key] = value
        total = sum(_cached_bytes(v) for v in self._columns.values())
        while total > COLUMN_CACHE_BYTES and len(self._columns) > 1:
            _, old = self._columns.popitem(last=False)
            total -= _cached_bytes(old)

    def segment_codes(self, seg: int, column: str) -> tuple[np.ndarray, list[str]]:
        """A low-cardinality string column of a segment as (int codes per row, −1 for null; distinct
        values), cached."""
        key = (seg, f"codes:{column}")
        hit = self._columns.get(key)
        if hit is None:
            segment = self.state.segments[seg]
            col = pq.read_table(self.backend.object_path(segment.provenance), columns=[column], read_dictionary=[column]).column(column)
            # dictionary-encoded on disk: read as dictionaries, unified across row groups (no string hashing)
            enc = col.unify_dictionaries().combine_chunks() if pa.types.is_dictionary(col.type) else col.combine_chunks().dictionary_encode()
            hit = np.empty(2, dtype=object)
            hit[0] = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)  # −1: null
            hit[1] = enc.dictionary.to_pylist()
            self._remember(key, hit)
        return hit[0], hit[1]

    def gather(self, rows: np.ndarray, want_sources: bool = False, want_hashes: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Content hashes (aligned with ``rows``) and, if asked, each row's source as an index into
        the returned source names."""
        n = len(rows)
        hashes = np.empty(n, dtype=ID_DTYPE)
        names: list[str] = []
        index: dict[str, int] = {}
        src = np.zeros(n, dtype=np.int64)
        if n == 0:
            return hashes, src, names
        order = np.argsort(rows["seg"], kind="stable")
        segs = rows["seg"][order]
        bounds = np.flatnonzero(np.diff(segs)) + 1
        for part in np.split(order, bounds):
            seg = int(rows["seg"][part[0]])
            at = rows["row"][part].astype(np.int64)
            if want_hashes:
                hashes[part] = self.segment_column(seg, "content_sha256")[at]
            if want_sources:
                segment = self.state.segments[seg]
                if len(segment.sources) == 1:
                    sid = segment.sources[0]
                    src[part] = index.setdefault(sid, len(index))
                else:
                    local, values = self.segment_codes(seg, "source_id")
                    mapping = np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
                    src[part] = mapping[local[at]]
        names = [None] * len(index)  # type: ignore[list-item]
        for k, v in index.items():
            names[v] = k
        return hashes, src, names

    def snapshots_of(self, rows: np.ndarray) -> dict[str, list[str]]:
        """Which source snapshots a set of rows comes from (source id → sorted snapshot ids)."""
        out: dict[str, set[str]] = {}
        if len(rows) == 0:
            return {}
        order = np.argsort(rows["seg"], kind="stable")
        bounds = np.flatnonzero(np.diff(rows["seg"][order])) + 1
        for part in np.split(order, bounds):
            seg = int(rows["seg"][part[0]])
            at = rows["row"][part].astype(np.int64)
            s_codes, s_vals = self.segment_codes(seg, "source_id")
            p_codes, p_vals = self.segment_codes(seg, "source_snapshot")
            pairs = np.unique(s_codes[at].astype(np.int64) * len(p_vals) + p_codes[at])
            for pair in pairs.tolist():
                out.setdefault(s_vals[pair // len(p_vals)], set()).add(p_vals[pair % len(p_vals)])
        return {k: sorted(v) for k, v in sorted(out.items())}

    def manifest(self, version_id: str) -> dict[str, Any]:
        hit = self._manifests.get(version_id)
        if hit is None:
            info = self.state.versions[version_id]
            hit = orjson.loads(self.backend.read_bytes(info.manifest))
            self._manifests[version_id] = hit
            # a committed manifest's chunks are in the store: an object store need not upload them again
            self.backend.note_present(c[0] for part in ("rows", "inputs", "contents") for c in hit.get(part, {}).get("chunks", []))
        return hit

    def version_rows(self, version_id: str) -> np.ndarray:
        chunks = self.manifest(version_id)["rows"]["chunks"]
        self.backend.prefetch(c[0] for c in chunks)
        return self.chunks.load_all(chunks)

    def version_inputs(self, version_id: str) -> np.ndarray:
        chunks = self.manifest(version_id)["inputs"]["chunks"]
        self.backend.prefetch(c[0] for c in chunks)
        return self.chunks.load_all(chunks)

    # -- verbs -------------------------------------------------------------------------------------
    def ingest(self, inputs: Any, source: str | None = None, **kwargs: Any) -> IngestReport:
        """Read files or tables, hash every row, and stage them with provenance (see ops/ingest.py)."""
        from .ops.ingest import ingest

        return ingest(self, inputs, source=source, **kwargs)

    def remove(self, source: str | None = None, row_ids: Sequence[str] | None = None, reason: str | None = None, corpus: str = "main") -> int:
        """Stage the removal of a source's rows (or of given row ids); returns how many rows."""
        from .ops.remove import remove

        return remove(self, source=source, row_ids=row_ids, reason=reason, corpus=corpus)

    def apply(self, steps: Any, corpus: str = "main", monitor: dict[str, Any] | None = None, dry_run: bool = False, progress: Any = None, engine: str = "local", address: str | None = None) -> ApplyReport:
        """Set the corpus pipeline (a list of ``rowtrail.steps`` or a ``Pipeline``), run it over the
        input set and stage the result; ``dry_run`` only reports what it would do. ``engine="ray"``
        runs the steps on Ray Data (``address``: a cluster to join; same results as ``"local"``)."""
        from .ops.apply import apply

        return apply(self, steps, corpus=corpus, monitor=monitor, dry_run=dry_run, progress=progress, engine=engine, address=address)

    def optout(self, *, reason: str, source: str | None = None, key: str | None = None, content_hash: str | None = None, match: str | None = None, duplicates: str | None = None, corpus: str = "main", tag: str | None = None, sign: bool = True, steps: Any = None, purge: bool = False) -> dict[str, Any]:
        """Remove a consent holder's rows and their descendants, commit, register the request and
        return the signed removal receipt (see ops/optout.py)."""
        from .ops.optout import optout

        return optout(self, reason=reason, source=source, key=key, content_hash=content_hash, match=match, duplicates=duplicates, corpus=corpus, tag=tag, sign=sign, steps=steps, purge=purge)

    def run(self, run_id: str) -> Run:
        """A recorded training run (``rt.training.record``): its ledger and attribution."""
        from .ops.runs import get

        return get(self, run_id)

    def runs(self) -> list[dict[str, Any]]:
        """Every training run recorded in the store, oldest first."""
        from .ops.runs import run_entries, summary

        return [summary(e) for e in run_entries(self)]

    def bisect(self, good: str, bad: str, *, test: Any, steps: Any = None, corpus: str = "main", keep: bool = False, log: Any = None) -> BisectReport:
        """Find the first change from version ``good`` to ``bad`` (a source's input rows, or a
        pipeline step) that makes ``test`` fail — a shell command or a callable; read-only."""
        from .ops.bisect import bisect

        return bisect(self, good, bad, test=test, steps=steps, corpus=corpus, keep=keep, log=log)

    def commit(self, message: str, tag: str | None = None, corpus: str = "main", sign: bool = True, key: str | None = None, allow_empty: bool = False, progress: Any = None, override_policy: str | None = None) -> Version:
        """Record the corpus's pipeline output over its input set as a new signed version."""
        from .ops.commit import commit

        vid = commit(self, message, tag=tag, corpus=corpus, sign=sign, key=key, allow_empty=allow_empty, progress=progress, override_policy=override_policy)
        return self.version(vid)

    def version(self, ref: str = "HEAD", corpus: str = "main") -> Version:
        from .versions.version import Version

        return Version(self, self.state.resolve(ref, corpus))

    def versions(self, corpus: str | None = None) -> list[Version]:
        from .versions.version import Version

        st = self.state
        return [Version(self, st.versions[v]) for v in st.version_order if corpus is None or st.versions[v].corpus == corpus]

    def log(self, corpus: str = "main") -> list[Version]:
        """Versions of a corpus, newest first, following parents from HEAD."""
        out = []
        st = self.state
        vid = st.heads.get(corpus)
        while vid:
            out.append(self.version(vid))
            vid = st.versions[vid].parent
        return out

    def status(self, corpus: str = "main") -> dict[str, Any]:
        from .ops.status import status

        return status(self, corpus)

    def rows(self, version: str = "HEAD", source: str | None = None, corpus: str = "main", limit: int | None = None) -> pa.Table:
        """Rows of a version as an Arrow table: content fields plus provenance columns."""
        from .query.rows import rows

        return rows(self, version, source=source, corpus=corpus, limit=limit)

    def trace(self, row_id: str) -> dict[str, Any]:
        """Where a row came from and where it went: source, ingest, drops, lineage, versions, runs."""
        from .ops.trace import trace

        return trace(self, row_id)

    def prove(self, row_id: str, version: str = "HEAD", absent: bool = False, content: bool = False, corpus: str = "main") -> dict[str, Any]:
        """An RFC 9162 inclusion proof (or, with ``absent``, an exclusion proof) for a row id or,
        with ``content``, a content hash, against a version's Merkle root."""
        from .ops.prove import prove

        return prove(self, row_id, version, absent=absent, content=content, corpus=corpus)

    def sign(self, version: str = "HEAD", key: str | None = None, corpus: str = "main") -> dict[str, Any]:
        """Add a signature with the key named ``key`` to a committed version (a co-signature, or the
        first one of a version committed unsigned); ``verify(threshold=K)`` asks for K trusted keys."""
        from .ops.sign import sign_version

        return sign_version(self, version, key, corpus)

    def journal_root(self, size: int | None = None) -> dict[str, Any]:
        """The journal's RFC 9162 tree head — ``{tree_size, root, last_entry}`` over the committed
        entries' lines (or the first ``size``): keep it to check a later consistency proof."""
        from .ops.prove import journal_root

        return journal_root(self, size)

    def prove_consistency(self, old_size: int, new_size: int | None = None) -> dict[str, Any]:
        """An RFC 9162 consistency proof that the journal's first ``old_size`` entries are, unchanged,
        the start of its first ``new_size`` (default: all); check it with
        ``rowtrail.hashing.verify_consistency(proof, old_root=KEPT_ROOT)``."""
        from .ops.prove import prove_consistency

        return prove_consistency(self, old_size, new_size)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run SQL over read-only views of the store (sources, rows, versions, version_rows, drops, step_drops, lineage, quarantine, journal)."""
        from .query.views import run_sql

        return run_sql(self, query, params)

    def verify(
        self,
        allow_unsigned: bool = False,
        pubkeys: Sequence[str] | None = None,
        version: str | None = None,
        sample: int | None = None,
        progress: Any = None,
        threshold: int = 1,
    ) -> VerifyReport:
        """Check every object, the journal chain, signatures (at least ``threshold`` distinct trusted
        keys per signed version) and version digests; never raises on damage."""
        from .ops.verify import verify

        return verify(self, allow_unsigned=allow_unsigned, pubkeys=pubkeys, version=version, sample=sample, progress=progress, threshold=threshold)


def _cached_bytes(value: np.ndarray) -> int:
    """Memory of a cached column: an array, or (codes, values) from ``segment_codes`` (counted by
    its codes; string columns count their pointers, a lower bound)."""
    if value.dtype == object and len(value) == 2 and isinstance(value[0], np.ndarray):
        return int(value[0].nbytes)
    return int(value.nbytes)
