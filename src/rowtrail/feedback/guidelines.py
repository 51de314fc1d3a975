"""Annotation guidelines: registered texts, content-hashed, one per version.

``rowtrail guideline add FILE --version 3`` stores the file's bytes as an object and appends one
``guideline.add`` journal entry ``{version, digest, name, bytes, expected}`` (``expected``: the label
distribution the guideline's authors expect, ``{task or "*": {label: share}}``, or null). A version is registered once:
adding the same text again is a no-op, a different text under a taken version is refused (register
it as a new version). Annotations name their guideline version; an import refuses a version that
is not registered, and each annotation row carries the text's digest (``guideline_sha256``), so a
row binds the exact guideline it was made under.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RowtrailError

if TYPE_CHECKING:
    from ..store import Store

KIND = "guideline.add"


class GuidelineError(RowtrailError):
    """A guideline that cannot be registered or is not registered."""


@dataclass(frozen=True)
class Guideline:
    version: str
    digest: str  # SHA-256 of the text's bytes (an object in the store)
    name: str
    bytes: int
    at: str
    seq: int
    expected: dict[str, dict[str, float]] | None = None  # task (or "*") → label → share, as declared

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _of(e: dict[str, Any]) -> Guideline:
    return Guideline(e["version"], e["digest"], e["name"], e["bytes"], e["at"], e["seq"], e.get("expected"))


def normalize_expected(expected: Any) -> dict[str, dict[str, float]]:
    """An expected label distribution as ``{task: {label: share}}`` (``"*"``: any task), each
    normalized to sum to 1. A flat ``{label: share}`` means every task."""
    if not isinstance(expected, dict) or not expected:
        raise GuidelineError('an expected distribution is a JSON object such as {"good": 0.6, "bad": 0.4} (or {"task": {...}})')
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in expected.values()):
        expected = {"*": expected}
    out: dict[str, dict[str, float]] = {}
    for task, shares in expected.items():
        if (
            not isinstance(shares, dict)
            or not shares
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in shares.values())
        ):
            raise GuidelineError(f"expected shares for {task!r} must be non-negative numbers by label")
        total = float(sum(shares.values()))
        if total <= 0:
            raise GuidelineError(f"expected shares for {task!r} sum to 0")
        out[str(task)] = {str(k): float(v) / total for k, v in sorted(shares.items())}
    return out


def registered(store: Store) -> dict[str, Guideline]:
    """Registered guideline versions, in registration order."""
    out: dict[str, Guideline] = {}
    for e in store.state.entries:
        if e["kind"] == KIND:
            out[e["version"]] = _of(e)
    return out


def add(store: Store, path: str | Path, version: str | int, expected: Any = None) -> tuple[Guideline, bool]:
    """Register a guideline text under ``version`` (optionally with the label distribution its
    authors expect, which run cards compare the training signal against); returns it and whether
    it was new."""
    exp = normalize_expected(expected) if expected is not None else None
    version = str(version).strip()
    if not version:
        raise GuidelineError("a guideline version must not be empty (e.g. --version 3)")
    path = Path(path)
    if not path.is_file():
        raise GuidelineError(f"no such file: {path}")
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GuidelineError(f"{path}: a guideline must be UTF-8 text ({exc})") from None
    digest = store.backend.put_bytes(data)
    with store._write() as state:
        for e in state.entries:
            if e["kind"] == KIND and e["version"] == version:
                g = _of(e)
                if e["digest"] == digest and (exp is None or exp == e.get("expected")):
                    return g, False
                if e["digest"] == digest:
                    raise GuidelineError(
                        f"guideline version {version} is registered with another expected distribution; guideline versions never change"
                    )
                raise GuidelineError(
                    f"guideline version {version} is registered with another text ({e['digest'][:12]}, from {e['name']}); "
                    "guideline versions never change: register this text as a new version"
                )
        entry = store._append(
            state, {"kind": KIND, "version": version, "digest": digest, "name": path.name, "bytes": len(data), "expected": exp}
        )
    return _of(entry), True


def get(store: Store, version: str | int) -> Guideline:
    found = registered(store)
    g = found.get(str(version))
    if g is None:
        known = ", ".join(found) or "none"
        raise GuidelineError(
            f"no guideline version {version} (registered: {known}); add it with 'rowtrail guideline add FILE --version {version}'"
        )
    return g


def text(store: Store, version: str | int) -> str:
    return store.backend.read_bytes(get(store, version).digest).decode("utf-8")


def diff(store: Store, old: str | int, new: str | int, version: str | None = None) -> dict[str, Any]:
    """The text diff between two guideline versions (unified), and which annotation batches fall
    under each (from every annotation row ingested into the store, or only those of ``version``)."""
    from .annotations import batches_by_guideline

    a, b = get(store, old), get(store, new)
    lines = list(
        difflib.unified_diff(
            text(store, a.version).splitlines(keepends=True),
            text(store, b.version).splitlines(keepends=True),
            fromfile=f"guideline v{a.version} ({a.digest[:12]})",
            tofile=f"guideline v{b.version} ({b.digest[:12]})",
        )
    )
    batches = batches_by_guideline(store, version=version)
    return {
        "old": a.to_dict(),
        "new": b.to_dict(),
        "diff": "".join(line if line.endswith("\n") else line + "\n" for line in lines),
        "added_lines": sum(1 for x in lines if x.startswith("+") and not x.startswith("+++")),
        "removed_lines": sum(1 for x in lines if x.startswith("-") and not x.startswith("---")),
        "batches": {a.version: batches.get(a.version, []), b.version: batches.get(b.version, [])},
    }
