"""Admission policies: rules over source and row provenance that decide which sources a version may
hold, and the classification each admitted row carries.

A policy is a TOML file the user writes and sets with ``rowtrail policy set FILE`` (its bytes become
an object; a ``policy`` journal entry makes it the store's policy). Every later commit evaluates it
over the sources of the version's rows, records its digest in the version content (``policy``,
DESIGN format 6) and, in the manifest, which rule admitted or rejected each source; a commit whose
rows break a rule fails naming the rule and the sources, unless it is overridden with a reason
(recorded too).

    [[rule]]
    name = "commercial-licences"          # each rule: a name, what it applies to, what it requires
    applies_to = { kinds = ["crawl", "partner-dump"] }   # kinds / sources; default: every source
    licenses = ["MIT", "Apache-2.0", "CC-BY-4.0"]       # the licence expression must be satisfiable with these
    legal_basis = ["licence", "contract", "consent"]      # or true: any recorded legal basis
    generators = ["human"]                                # allowed generators (machine-made content)
    collected_within = ["2023-01-01", "2026-12-31"]       # the collection period must lie inside
    require_attributes = ["guideline_version"]            # row attributes every row must carry
    no_opted_out = true                                   # no row's content is in the opt-out register

    [[classify]]                          # first match wins; every admitted row carries the labels
    applies_to = { licenses = ["MIT", "Apache-2.0"] }
    set = { use = "commercial", sensitivity = "low" }
"""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PolicyError

if TYPE_CHECKING:
    from ..records import SourceRecord
    from ..store import Store
    from ..versions.journal import State

RULE_KEYS = {"name", "applies_to", "licenses", "legal_basis", "generators", "collected_within", "require_attributes", "no_opted_out"}
FILTER_KEYS = {"kinds", "sources", "licenses", "generators"}


def parse(text: str, where: str = "policy") -> dict[str, Any]:
    """A policy document, checked: unknown keys and bad values are errors naming the rule."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    unknown = sorted(set(doc) - {"rule", "classify"})
    if unknown:
        raise PolicyError(f"{where}: unknown table(s) {', '.join(unknown)}; a policy has [[rule]] and [[classify]]")
    names = set()
    for i, rule in enumerate(doc.get("rule", []), 1):
        if not rule.get("name"):
            raise PolicyError(f"{where}: rule {i} needs a name")
        if rule["name"] in names:
            raise PolicyError(f"{where}: two rules are named '{rule['name']}'")
        names.add(rule["name"])
        bad = sorted(set(rule) - RULE_KEYS)
        if bad:
            raise PolicyError(f"{where}: rule '{rule['name']}': unknown key(s) {', '.join(bad)}; allowed: {', '.join(sorted(RULE_KEYS))}")
        _check_filter(rule.get("applies_to", {}), f"{where}: rule '{rule['name']}'")
        if "collected_within" in rule and (not isinstance(rule["collected_within"], list) or len(rule["collected_within"]) != 2):
            raise PolicyError(f"{where}: rule '{rule['name']}': collected_within is [start, end]")
    for i, c in enumerate(doc.get("classify", []), 1):
        if not isinstance(c.get("set"), dict) or not c["set"]:
            raise PolicyError(f"{where}: classify {i} needs set = {{label = value}}")
        _check_filter(c.get("applies_to", {}), f"{where}: classify {i}")
    return doc


def _check_filter(f: dict[str, Any], where: str) -> None:
    bad = sorted(set(f) - FILTER_KEYS)
    if bad:
        raise PolicyError(f"{where}: applies_to has unknown key(s) {', '.join(bad)}; allowed: {', '.join(sorted(FILTER_KEYS))}")


def current(state: State) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """The store's policy: (digest, parsed document, text), or Nones when none is set."""
    for e in reversed(state.entries):
        if e["kind"] == "policy":
            return e.get("digest"), e.get("document"), e.get("text")
    return None, None, None


def set_policy(store: Store, text: str, where: str = "policy") -> str:
    doc = parse(text, where)
    with store._write() as state:
        digest = store.backend.put_bytes(text.encode())
        store._append(state, {"kind": "policy", "digest": digest, "document": doc, "text": text})
    return digest


# -- evaluation ------------------------------------------------------------------------------------
def license_satisfiable(expression: str | None, allowed: list[str]) -> bool:
    """Whether an SPDX expression can be met using only allowed licences (OR: any side, AND: both)."""
    if not expression:
        return False
    from license_expression import AND, OR, get_spdx_licensing

    lic = get_spdx_licensing()
    allowed_keys = {str(a).lower() for a in allowed}

    def ok(node: Any) -> bool:
        if isinstance(node, OR):
            return any(ok(a) for a in node.args)
        if isinstance(node, AND):
            return all(ok(a) for a in node.args)
        return str(node).lower() in allowed_keys or str(getattr(node, "key", node)).lower() in allowed_keys

    try:
        return ok(lic.parse(expression))
    except Exception:  # noqa: BLE001 - an unparsable expression satisfies nothing
        return False


def _applies(f: dict[str, Any], src: SourceRecord) -> bool:
    if "kinds" in f and src.kind not in f["kinds"]:
        return False
    if "sources" in f and src.source_id not in f["sources"]:
        return False
    if "generators" in f and src.generator not in f["generators"]:
        return False
    if "licenses" in f and not license_satisfiable(src.license, f["licenses"]):
        return False
    return True


def _period(collected: str | None) -> tuple[str, str] | None:
    if not collected:
        return None
    start, _, end = collected.partition("/")
    return start[:10], (end or start)[:10]


def evaluate(store: Store, doc: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """Per source of ``rows``: each applicable rule's verdict, admitted or not, and its labels."""
    from ..ops.optout import registered_hashes

    state = store.state
    hashes, src_idx, names = store.gather(rows, want_sources=True)
    counts = np.bincount(src_idx, minlength=len(names)) if len(rows) else np.zeros(0, np.int64)
    opted, _owners = registered_hashes(store, state)
    out: dict[str, Any] = {}
    for i, sid in enumerate(names):
        if not counts[i]:
            continue
        src = state.sources[sid]
        verdicts = []
        for rule in doc.get("rule", []):
            if not _applies(rule.get("applies_to", {}), src):
                continue
            problems = []
            if "licenses" in rule and not license_satisfiable(src.license, rule["licenses"]):
                problems.append(f"licence {src.license or '(none)'} is not among {', '.join(rule['licenses'])}")
            lb = rule.get("legal_basis")
            if lb is True and not src.legal_basis:
                problems.append("no legal basis recorded")
            elif isinstance(lb, list) and src.legal_basis not in lb:
                problems.append(f"legal basis {src.legal_basis or '(none)'} is not among {', '.join(lb)}")
            if "generators" in rule and src.generator not in rule["generators"]:
                problems.append(f"generator {src.generator} is not allowed")
            if "collected_within" in rule:
                period = _period(src.collected)
                lo, hi = (str(x)[:10] for x in rule["collected_within"])
                if period is None:
                    problems.append("no collection period recorded")
                elif period[0] < lo or period[1] > hi:
                    problems.append(f"collected {src.collected}, outside {lo}/{hi}")
            for attr in rule.get("require_attributes", []):
                missing = _missing_attribute(store, rows[src_idx == i], attr)
                if missing:
                    problems.append(f"{missing} row(s) lack attribute '{attr}'")
            if rule.get("no_opted_out") and len(opted):
                n = int(np.isin(hashes[src_idx == i], opted).sum())
                if n:
                    problems.append(f"{n} row(s) hold opted-out content")
            verdicts.append({"rule": rule["name"], "ok": not problems, "problems": problems})
        labels: dict[str, Any] = {}
        for c in doc.get("classify", []):
            if _applies(c.get("applies_to", {}), src):
                labels = dict(c["set"])
                break
        admitted = all(v["ok"] for v in verdicts)
        out[sid] = {
            "admitted": admitted,
            "rows": int(counts[i]),
            "rule": next((v["rule"] for v in verdicts if not v["ok"]), None) if not admitted else (verdicts[-1]["rule"] if verdicts else None),
            "rules": verdicts,
            "classification": labels,
        }
    return out


def _missing_attribute(store: Store, rows: np.ndarray, attr: str) -> int:
    missing = 0
    for seg in np.unique(rows["seg"]) if len(rows) else []:
        at = rows["row"][rows["seg"] == seg].astype(np.int64)
        segment = store.state.segments[int(seg)]
        import pyarrow.parquet as pq

        if "attr." + attr not in pq.ParquetFile(store.backend.object_path(segment.provenance)).schema_arrow.names:
            missing += len(at)  # a segment without the column lacks it on every row
            continue
        col = store.segment_column(int(seg), "attr." + attr)
        vals = col[at]
        missing += int(sum(1 for v in vals if v is None or (isinstance(v, float) and np.isnan(v))))
    return missing


def admission(store: Store, rows: np.ndarray, override: str | None = None) -> tuple[str | None, dict[str, Any] | None]:
    """At commit: the policy digest for the version content and the admission record for the
    manifest; raises PolicyError naming the rules and sources a version would break."""
    digest, doc, _text = current(store.state)
    if digest is None or doc is None:
        return None, None
    verdicts = evaluate(store, doc, rows)
    rejected = {sid: v for sid, v in verdicts.items() if not v["admitted"]}
    if rejected and not override:
        lines = [f"{sid} (rule '{v['rule']}': {'; '.join(p for r in v['rules'] if not r['ok'] for p in r['problems'])})" for sid, v in sorted(rejected.items())]
        raise PolicyError(
            f"the admission policy rejects {len(rejected)} source(s): " + ", ".join(lines)
            + "; remove them (rowtrail rm --source S), change the policy, or commit with --override-policy REASON"
        )
    return digest, {"policy": digest, "sources": verdicts, "override": override or None}


def check(store: Store, version: str = "HEAD", corpus: str = "main") -> dict[str, Any]:
    """The current policy evaluated over a version's rows (what ``rowtrail policy check V`` shows)."""
    digest, doc, _ = current(store.state)
    if doc is None:
        raise PolicyError("no admission policy is set; write one and run 'rowtrail policy set FILE'")
    info = store.state.resolve(version, corpus)
    verdicts = evaluate(store, doc, store.version_rows(info.version_id))
    return {"version_id": info.version_id, "tag": info.tag, "policy": digest, "ok": all(v["admitted"] for v in verdicts.values()), "sources": verdicts}


def row_admission(store: Store, version_id: str, source_id: str) -> dict[str, Any] | None:
    """How a version's policy admitted a source's rows (for trace)."""
    adm = store.manifest(version_id).get("admission")
    if not adm:
        return None
    v = adm["sources"].get(source_id)
    return None if v is None else {"policy": adm["policy"], "override": adm.get("override"), **v}

