"""Bisect: find the change between a good and a bad version that makes a test fail.

**Changes.** A version is its pipeline's output over its input set, so two versions differ by
changes of two kinds, listed in this order:

1. *source* changes, one per source whose input rows differ (a source added, dropped, or with rows
   added and/or removed), ordered by source id;
2. *step* changes, in pipeline order: the two step id lists are aligned (a longest-matching-blocks
   alignment); a step of BAD missing from GOOD is ``add-step`` (inserted at its BAD position), a step
   of GOOD missing from BAD is ``remove-step``, and a step both hold in a different order is one
   ``move-step`` change (taken out of its GOOD position, put at its BAD position). A step whose
   parameters changed has another step id: it shows as ``remove-step`` then ``add-step``.

**Candidates.** Candidate *k* is GOOD's input set and pipeline with the first *k* changes applied:
candidate 0 is GOOD and candidate *n* is BAD (those two are read from the versions themselves). Any
other candidate runs its pipeline in memory (``ops.apply.run_pipeline``): nothing is written to the
store, so bisect is read-only on it. Steps are rebuilt from their recorded definitions, or taken from
the live ``Step`` objects the caller supplies (matched by step id) — the only way to run a step
that calls a user function.

**Tests.** The candidate corpus is one Arrow table — content fields as columns, then ``row_id``
(hex), ``source_id`` and ``weight`` (a name a content field already uses gets a leading ``_``) —
given to a Python callable (``True`` = good, ``False`` = bad, ``"skip"`` = cannot tell), or written to
a Parquet file for a shell command, which finds it in ``$ROWTRAIL_BISECT_CORPUS`` or as ``{corpus}``
in its text; like ``git bisect run``, exit 0 is good, 1 bad and 125 skip, and any other code stops.
A candidate whose pipeline cannot run (a step reading a column an unapplied step attaches) is
skipped too.

**Search.** GOOD must test good and BAD bad. Then a binary search for the smallest bad *k*, which
assumes that once a candidate is bad every later one is (as git bisect does); a skipped candidate
is replaced by its nearest untried neighbour. When skips leave several changes between the last good
and the first bad candidate, the report lists them all as suspects.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import BisectError, StepError
from ..hashing import sort_ids
from ..segments import hex_array, read_rows_at
from ..steps.base import Step
from ..steps.pipeline import Pipeline, from_definition
from .diff import sorted_membership

if TYPE_CHECKING:
    from ..engines.local import PendingSegment
    from ..store import Store

CORPUS_ENV = "ROWTRAIL_BISECT_CORPUS"
CORPUS_PLACEHOLDER = "{corpus}"
EXIT_GOOD, EXIT_BAD, EXIT_SKIP = 0, 1, 125
GOOD, BAD, SKIP = "good", "bad", "skip"
OUTPUT_TAIL_CHARS = 2000  # how much of a test command's output a trial keeps

Test = str | Callable[[pa.Table], Any]
Log = Callable[["Trial"], None]


@dataclass(frozen=True)
class Change:
    """One difference between GOOD and BAD (``index`` counts from 1 in the order of the module docstring)."""

    index: int
    kind: str  # "source", "add-step", "remove-step" or "move-step"
    source: str | None = None
    status: str | None = None  # for a source: "added", "dropped" or "changed"
    rows_added: int = 0
    rows_removed: int = 0
    step_id: str | None = None
    name: str | None = None
    use: str | None = None
    position: int | None = None  # 1-based: in BAD's pipeline (add, move) or GOOD's (remove)

    @property
    def label(self) -> str:
        if self.kind == "source":
            counts = ", ".join(p for p in (f"+{self.rows_added} rows" if self.rows_added else "", f"−{self.rows_removed} rows" if self.rows_removed else "") if p)
            return f"source '{self.source}' {self.status} ({counts})"
        verb = {"add-step": "add step", "remove-step": "remove step", "move-step": "move step"}[self.kind]
        where = {"add-step": "at", "remove-step": "from", "move-step": "to"}[self.kind]
        return f"{verb} '{self.name}' ({self.use or 'custom'}, {(self.step_id or '')[:12]}) {where} position {self.position}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "kind": self.kind, "label": self.label}
        if self.kind == "source":
            out.update(source=self.source, status=self.status, rows_added=self.rows_added, rows_removed=self.rows_removed)
        else:
            out.update(step_id=self.step_id, name=self.name, use=self.use, position=self.position)
        return out


@dataclass
class Trial:
    """One tested candidate: the first ``k`` changes applied to GOOD."""

    k: int
    n: int
    description: str
    rows: int
    result: str  # "good", "bad" or "skip"
    seconds: float
    exit_code: int | None = None  # for a shell command
    note: str | None = None  # why a candidate was skipped without testing it
    output: str | None = None  # the end of a shell command's output
    corpus_path: str | None = None  # the candidate's Parquet file, when kept

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("k", "n", "description", "rows", "result", "seconds", "exit_code", "note", "output", "corpus_path")}


@dataclass
class BisectReport:
    good: str  # version ids
    bad: str
    good_tag: str | None
    bad_tag: str | None
    changes: list[Change]
    first_bad: Change | None  # None when skips left more than one suspect
    suspects: list[Change]  # the changes the first bad one is among (just it, when found)
    log: list[Trial] = field(default_factory=list)
    workdir: str | None = None  # kept candidate files (keep=True)

    @property
    def tests(self) -> int:
        """How many candidates the test ran on (skipped-without-testing candidates excluded)."""
        return sum(1 for t in self.log if t.note is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "good": {"version_id": self.good, "tag": self.good_tag},
            "bad": {"version_id": self.bad, "tag": self.bad_tag},
            "changes": [c.to_dict() for c in self.changes],
            "first_bad": self.first_bad.to_dict() if self.first_bad else None,
            "suspects": [c.to_dict() for c in self.suspects],
            "tests": self.tests,
            "log": [t.to_dict() for t in self.log],
            "workdir": self.workdir,
        }


# -- step alignment --------------------------------------------------------------------------------
StepEntry = tuple[str, int | None, int | None]  # (step id, added by change #, removed by change #)


def align_steps(good: Sequence[str], bad: Sequence[str]) -> tuple[list[tuple[str, str, int]], list[StepEntry]]:
    """Step changes from pipeline ``good`` to ``bad`` (kind, step id, 1-based position), and the merged
    step list that ``pipeline_at`` reads candidates from. Change numbers in the entries are 0-based
    indices into the returned changes."""
    merged: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, list(good), list(bad), autojunk=False).get_opcodes():
        if tag == "equal":
            merged += [(s, "both") for s in good[i1:i2]]
        else:
            merged += [(s, "good") for s in good[i1:i2]] + [(s, "bad") for s in bad[j1:j2]]
    moved = {s for s, side in merged if side == "good"} & {s for s, side in merged if side == "bad"}
    changes: list[tuple[str, str, int]] = []
    number: dict[tuple[str, str], int] = {}
    for sid, side in merged:
        if side == "good" and sid not in moved:
            number[(side, sid)] = len(changes)
            changes.append(("remove-step", sid, list(good).index(sid) + 1))
        elif side == "bad":
            number[(side, sid)] = len(changes)
            changes.append(("move-step" if sid in moved else "add-step", sid, list(bad).index(sid) + 1))
    entries: list[StepEntry] = []
    for sid, side in merged:
        if side == "both":
            entries.append((sid, None, None))
        elif side == "good":
            entries.append((sid, None, number[("bad", sid)] if sid in moved else number[("good", sid)]))
        else:
            entries.append((sid, number[("bad", sid)], None))
    return changes, entries


def pipeline_at(entries: Sequence[StepEntry], applied: int) -> list[str]:
    """The step ids of the pipeline with the first ``applied`` step changes made."""
    return [sid for sid, add, rem in entries if (add is None or add < applied) and (rem is None or rem >= applied)]


# -- reading candidates ----------------------------------------------------------------------------
def _pending_index(seg: int) -> int | None:
    from ..engines.local import PENDING

    return seg - PENDING if seg >= PENDING else None


def _source_codes(store: Store, records: np.ndarray, pending: Sequence[PendingSegment] = ()) -> tuple[np.ndarray, list[str]]:
    """Each record's source as an index into the returned names (records of stored or pending segments)."""
    codes = np.zeros(len(records), dtype=np.int64)
    index: dict[str, int] = {}
    if len(records) == 0:
        return codes, []
    order = np.argsort(records["seg"], kind="stable")
    bounds = np.flatnonzero(np.diff(records["seg"][order].astype(np.int64))) + 1
    for part in np.split(order, bounds):
        seg = int(records["seg"][part[0]])
        at = records["row"][part].astype(np.int64)
        p = _pending_index(seg)
        if p is not None:
            enc = pending[p].provenance.column("source_id").combine_chunks().dictionary_encode()
            local, values = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary.to_pylist()
        else:
            segment = store.state.segments[seg]
            if len(segment.sources) == 1:
                codes[part] = index.setdefault(segment.sources[0], len(index))
                continue
            local, values = store.segment_codes(seg, "source_id")
        mapping = np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
        codes[part] = mapping[local[at]]
    names = [""] * len(index)
    for name, i in index.items():
        names[i] = name
    return codes, names


def corpus_table(store: Store, records: np.ndarray, pending: Sequence[PendingSegment] = ()) -> pa.Table:
    """A candidate corpus as one table in row-id order: content fields, ``row_id`` (hex),
    ``source_id`` and ``weight``."""
    from ..query.rows import content_table

    n = len(records)
    codes, names = _source_codes(store, records, pending)
    extra = {
        "row_id": hex_array(records["id"]) if n else pa.array([], pa.string()),
        "source_id": pa.array(names, pa.string()).take(pa.array(codes)) if n else pa.array([], pa.string()),
        "weight": pa.array(records["w"].astype(np.float64), pa.float64()),
    }
    if n == 0:
        return pa.table(extra)
    order = np.argsort(records["seg"], kind="stable")
    bounds = np.flatnonzero(np.diff(records["seg"][order].astype(np.int64))) + 1
    texts: list[pa.Array] = []
    for part in np.split(order, bounds):
        seg = int(records["seg"][part[0]])
        at = records["row"][part].astype(np.int64)
        p = _pending_index(seg)
        if p is not None:
            col = pending[p].content.column("content").take(pa.array(at))
        else:
            path = str(store.backend.object_path(store.state.segments[seg].content))
            col = read_rows_at(path, at, ["content"]).column("content")
        texts.extend(col.chunks if isinstance(col, pa.ChunkedArray) else [col])
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    content = content_table(pa.chunked_array(texts, pa.string()).take(pa.array(inverse)))
    arrays, fields = list(content.columns), list(content.schema)
    taken = set(content.column_names)
    for name, arr in extra.items():
        out_name = name
        while out_name in taken:
            out_name = f"_{out_name}"
        taken.add(out_name)
        arrays.append(arr)
        fields.append(pa.field(out_name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# -- the plan --------------------------------------------------------------------------------------
@dataclass
class _Plan:
    good_inputs: np.ndarray
    bad_inputs: np.ndarray
    source_rows: list[tuple[np.ndarray, np.ndarray]]  # per source change: (indices into bad_inputs added, into good_inputs removed)
    entries: list[StepEntry]
    changes: list[Change]

    @property
    def n(self) -> int:
        return len(self.changes)

    def inputs(self, k: int) -> np.ndarray:
        applied = self.source_rows[: min(k, len(self.source_rows))]
        if not applied:
            return self.good_inputs
        keep = np.ones(len(self.good_inputs), dtype=bool)
        for _added, removed in applied:
            keep[removed] = False
        recs = np.concatenate([self.good_inputs[keep], *[self.bad_inputs[added] for added, _removed in applied]])
        return recs[sort_ids(recs["id"])]

    def step_ids(self, k: int) -> list[str]:
        return pipeline_at(self.entries, max(0, k - len(self.source_rows)))


def _definitions(store: Store, version_id: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
    manifest = store.manifest(version_id)
    ids = list(manifest["record"]["content"]["pipeline"])
    return ids, {sid: {"step_id": sid, **d} for sid, d in manifest.get("steps", {}).items()}


def _plan(store: Store, good: str, bad: str) -> tuple[_Plan, dict[str, dict[str, Any]]]:
    g_in, b_in = store.version_inputs(good), store.version_inputs(bad)
    in_bad, in_good = sorted_membership(g_in["id"], b_in["id"])
    g_src, g_names = _source_codes(store, g_in)
    b_src, b_names = _source_codes(store, b_in)
    removed_pos, added_pos = np.flatnonzero(~in_bad), np.flatnonzero(~in_good)
    before = dict(zip(g_names, np.bincount(g_src, minlength=len(g_names)).tolist())) if len(g_in) else {}
    after = dict(zip(b_names, np.bincount(b_src, minlength=len(b_names)).tolist())) if len(b_in) else {}
    removed = {g_names[i]: removed_pos[g_src[removed_pos] == i] for i in np.unique(g_src[removed_pos]).tolist()}
    added = {b_names[i]: added_pos[b_src[added_pos] == i] for i in np.unique(b_src[added_pos]).tolist()}
    empty = np.empty(0, dtype=np.int64)
    changes: list[Change] = []
    source_rows = []
    for source in sorted(set(removed) | set(added)):
        a, r = added.get(source, empty), removed.get(source, empty)
        status = "added" if not before.get(source) else "dropped" if not after.get(source) else "changed"
        changes.append(Change(len(changes) + 1, "source", source=source, status=status, rows_added=len(a), rows_removed=len(r)))
        source_rows.append((a, r))
    g_ids, g_defs = _definitions(store, good)
    b_ids, b_defs = _definitions(store, bad)
    defs = {**g_defs, **b_defs}
    step_changes, entries = align_steps(g_ids, b_ids)
    for kind, sid, position in step_changes:
        d = defs.get(sid, {})
        changes.append(Change(len(changes) + 1, kind, step_id=sid, name=d.get("name"), use=d.get("use"), position=position))
    return _Plan(g_in, b_in, source_rows, entries, changes), defs


def _resolve_steps(needed: Iterable[str], defs: dict[str, dict[str, Any]], supplied: Iterable[Step]) -> dict[str, Step]:
    live = {s.id: s for s in supplied}
    out: dict[str, Step] = {}
    for sid in needed:
        if sid in live:
            out[sid] = live[sid]
            continue
        d = defs[sid]
        try:
            out[sid] = from_definition(d)
        except StepError as exc:
            raise StepError(
                f"bisect needs step '{d.get('name')}' ({d.get('use')}, {sid[:12]}) to build intermediate versions, and cannot rebuild it: {exc}. "
                f"Pass the pipeline file that defines it with --pipeline FILE (in Python: steps=[...]); its step id must be {sid[:12]}…, "
                "so the function's source and the parameters must be as they were when that version was made"
            ) from None
    return out


def _as_steps(steps: Pipeline | Iterable[Step] | None) -> list[Step]:
    if steps is None:
        return []
    out = list(steps.steps) if isinstance(steps, Pipeline) else list(steps)
    for s in out:
        if not isinstance(s, Step):
            raise StepError(f"bisect: steps= holds rowtrail steps (or a Pipeline), not {type(s).__name__}")
    return out


# -- running tests ---------------------------------------------------------------------------------
def _verdict(value: Any) -> str:
    if isinstance(value, str) and value == SKIP:
        return SKIP
    if isinstance(value, pa.Scalar):
        value = value.as_py()
    if isinstance(value, (bool, np.bool_)):
        return GOOD if bool(value) else BAD
    raise BisectError(f"the test returned {value!r}; a test returns True (good), False (bad) or 'skip'")


def _run_command(command: str, path: Path, what: str) -> tuple[str, int, str]:
    cmd = command.replace(CORPUS_PLACEHOLDER, shlex.quote(str(path)))
    env = {**os.environ, CORPUS_ENV: str(path)}
    proc = subprocess.run(cmd, shell=True, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    output = (proc.stdout + proc.stderr)[-OUTPUT_TAIL_CHARS:]
    code = proc.returncode
    if code == EXIT_GOOD:
        return GOOD, code, output
    if code == EXIT_BAD:
        return BAD, code, output
    if code == EXIT_SKIP:
        return SKIP, code, output
    hint = " (command not found?)" if code == 127 else " (killed by a signal)" if code < 0 else ""
    tail = f"; its output ended with:\n{output.strip()[-500:]}" if output.strip() else ""
    raise BisectError(
        f"the test command exited with {code}{hint} on candidate {what}; a bisect test exits 0 (good), 1 (bad) or 125 (skip), "
        f"and any other code stops the bisect — fix the command or map its failures to those codes{tail}"
    )


_OUTCOME = {GOOD: "tests good", BAD: "tests bad", SKIP: "was skipped by the test"}


def _describe(plan: _Plan, k: int, good_name: str, bad_name: str) -> str:
    if k == 0:
        return f"GOOD {good_name}"
    if k == plan.n:
        return f"BAD {bad_name}"
    span = "#1" if k == 1 else f"#1–#{k}"
    return f"GOOD + {span} (last: {plan.changes[k - 1].label})"


def bisect(
    store: Store,
    good: str,
    bad: str,
    *,
    test: Test,
    steps: Pipeline | Iterable[Step] | None = None,
    corpus: str = "main",
    keep: bool = False,
    log: Log | None = None,
) -> BisectReport:
    """Find the first change from version ``good`` to version ``bad`` that makes ``test`` fail (see
    the module docstring). ``test`` is a shell command or a callable on the candidate's table;
    ``steps`` supplies live steps (those running user functions); ``keep`` keeps each candidate's
    Parquet file; ``log`` is called with each ``Trial`` as it completes."""
    if not (isinstance(test, str) and test.strip()) and not callable(test):
        raise BisectError("give a test: a shell command (exit 0 good, 1 bad, 125 skip) or a callable taking the candidate's table")
    g_info, b_info = store.state.resolve(good, corpus), store.state.resolve(bad, corpus)
    good_name = g_info.tag or g_info.version_id[:12]
    bad_name = b_info.tag or b_info.version_id[:12]
    plan, defs = _plan(store, g_info.version_id, b_info.version_id)
    n = plan.n
    if n == 0:
        raise BisectError(
            f"{good_name} and {bad_name} have the same input rows and the same pipeline; nothing to bisect "
            "(if the test tells them apart, it depends on something outside the store)"
        )
    supplied = _as_steps(steps)
    needed = {sid for k in range(1, n) for sid in plan.step_ids(k)}
    resolved = _resolve_steps(sorted(needed), defs, supplied)
    workdir = Path(tempfile.mkdtemp(prefix="rowtrail-bisect-"))
    report = BisectReport(g_info.version_id, b_info.version_id, g_info.tag, b_info.tag, plan.changes, None, [], workdir=str(workdir) if keep else None)
    results: dict[int, str] = {}

    def trial(k: int) -> str:
        from .apply import run_pipeline

        start = time.perf_counter()
        description = _describe(plan, k, good_name, bad_name)
        pending: Sequence[PendingSegment] = ()
        if k in (0, n):
            records = store.version_rows(g_info.version_id if k == 0 else b_info.version_id)
        else:
            inputs = plan.inputs(k)
            chain = [resolved[sid] for sid in plan.step_ids(k)]
            if chain:
                try:
                    run = run_pipeline(store, Pipeline(chain, {}), inputs)
                except StepError as exc:
                    seconds = round(time.perf_counter() - start, 3)
                    return _record(Trial(k, n, description, 0, SKIP, seconds, note=f"the candidate's pipeline cannot run: {exc}"))
                records, pending = run.records, run.pending
            else:
                records = inputs
        table = corpus_table(store, records, pending)
        path: Path | None = None
        if isinstance(test, str) or keep:
            path = workdir / f"candidate-{k:04d}.parquet"
            pq.write_table(table, path)
        exit_code: int | None = None
        output: str | None = None
        if isinstance(test, str):
            if path is None:  # pragma: no cover - a command always gets a file
                raise AssertionError("no candidate file for the test command")
            result, exit_code, output = _run_command(test, path, f"{k} ({description})")
        else:
            result = _verdict(test(table))
        if path is not None and not keep:
            path.unlink(missing_ok=True)
        seconds = round(time.perf_counter() - start, 3)
        kept = str(path) if keep and path else None
        return _record(Trial(k, n, description, table.num_rows, result, seconds, exit_code=exit_code, output=output or None, corpus_path=kept))

    def _record(t: Trial) -> str:
        report.log.append(t)
        results[t.k] = t.result
        if log is not None:
            log(t)
        return t.result

    try:
        first = trial(0)
        if first != GOOD:
            raise BisectError(
                f"GOOD {good_name} {_OUTCOME[first]}: the test must pass on GOOD before bisecting; pick an older GOOD (see 'rowtrail log') or check the test"
            )
        last = trial(n)
        if last != BAD:
            raise BisectError(
                f"BAD {bad_name} {_OUTCOME[last]}: the test must fail on BAD before bisecting; pick a newer BAD (see 'rowtrail log') or check the test"
            )
        lo, hi = 0, n  # lo tests good, hi tests bad
        while hi - lo > 1:
            untried = [k for k in range(lo + 1, hi) if k not in results]
            if not untried:
                break
            mid = (lo + hi) / 2
            k = min(untried, key=lambda c: (abs(c - mid), c))
            result = trial(k)
            if result == GOOD:
                lo = k
            elif result == BAD:
                hi = k
        report.suspects = plan.changes[lo:hi]
        report.first_bad = report.suspects[0] if len(report.suspects) == 1 else None
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


__all__ = ["BisectError", "BisectReport", "Change", "Trial", "align_steps", "bisect", "corpus_table", "pipeline_at"]
