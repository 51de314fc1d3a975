"""The read-only HTTP API (``/api/…``): thin routes over ``queries.py`` and the library's verbs.

Every parameter is validated by FastAPI (bad form → 422 with the field named); an unknown version,
source, row or run raises the library's ``RefError``/``SourceNotFoundError``, which the app turns
into a 404 with the library's message (other library errors: 400). No route writes to the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from . import models, queries

HEX64 = r"^[0-9a-fA-F]{64}$"
REF = r"^[A-Za-z0-9._@~^:+-]{1,200}$"
SLUG = r"^[A-Za-z0-9._:@+-]{1,200}$"

RowId = Annotated[str, Path(pattern=HEX64, description="A row id: 64 hex digits.")]
VersionRef = Annotated[str, Path(pattern=REF, description="A tag, a version id (or its prefix), HEAD or HEAD~N.")]
Corpus = Annotated[str, Query(pattern=SLUG, description="The corpus the ref is resolved in.")]
Offset = Annotated[int, Query(ge=0, le=1 << 40, description="Rows to skip.")]
Limit = Annotated[int, Query(ge=1, le=queries.MAX_PAGE, description=f"Rows per page (at most {queries.MAX_PAGE}).")]

router = APIRouter(
    prefix="/api",
    responses={
        400: {"model": models.Problem, "description": "A request the library cannot carry out as asked"},
        401: {"model": models.Problem, "description": "A token is required (server started with --token)"},
        404: {"model": models.Problem, "description": "No such version, source, row or run"},
    },
)


def store(request: Request) -> Iterator[Any]:
    with request.app.state.stores.lend() as s:
        yield s


StoreDep = Annotated[Any, Depends(store)]


@router.get("/store", response_model=models.StoreInfo, summary="The store: corpora, counts, optional pages")
def store_info(s: StoreDep, request: Request) -> dict[str, Any]:
    from ..exports.documents import rowtrail_version

    st = s.state
    return {
        "path": str(s.path),
        "rowtrail_version": rowtrail_version(),
        "corpora": dict(st.heads),
        "versions": len(st.version_order),
        "sources": len(st.sources),
        "runs": sum(1 for e in st.entries if e["kind"] == "run"),
        "journal_entries": len(st.entries),
        "features": request.app.state.features,
    }


# -- versions -------------------------------------------------------------------------------------------


@router.get("/versions", response_model=list[models.VersionSummary], summary="Versions of a corpus, newest first")
def versions(s: StoreDep, corpus: Corpus = "main") -> list[dict[str, Any]]:
    return [queries.version_summary(s, v) for v in s.log(corpus)]


@router.get("/versions/{ref}", response_model=models.VersionDetail, summary="A version's record, content digests, sources and steps")
def version(s: StoreDep, ref: VersionRef, corpus: Corpus = "main") -> dict[str, Any]:
    return queries.version_detail(s, s.version(ref, corpus))


@router.get("/versions/{ref}/manifest", summary="A version's manifest (record, chunk lists, steps, snapshots)")
def manifest(s: StoreDep, ref: VersionRef, corpus: Corpus = "main") -> dict[str, Any]:
    return s.version(ref, corpus).manifest  # type: ignore[no-any-return]


@router.get("/versions/{ref}/attestation", summary="The DSSE envelope that signs a version")
def attestation(s: StoreDep, ref: VersionRef, corpus: Corpus = "main") -> dict[str, Any]:
    from ..errors import RefError

    v = s.version(ref, corpus)
    env = v.attestation()
    if env is None:
        raise RefError(f"version {v.tag or v.id[:12]} was committed with --no-sign; it has no attestation")
    return env  # type: ignore[no-any-return]


@router.get("/versions/{ref}/rows", response_model=models.RowsPage, summary="One page of a version's rows (content and provenance)")
def version_rows(
    s: StoreDep,
    ref: VersionRef,
    corpus: Corpus = "main",
    source: Annotated[str | None, Query(pattern=SLUG, description="Only rows of this source.")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    return queries.rows_page(s, ref, source=source, offset=offset, limit=limit, corpus=corpus)


@router.get("/versions/{ref}/drops", response_model=models.Drops, summary="Rows the version's pipeline dropped, by step, reason and source")
def drops(
    s: StoreDep,
    ref: VersionRef,
    corpus: Corpus = "main",
    step: Annotated[str | None, Query(pattern=SLUG, description="A step name or step id prefix.")] = None,
    source: Annotated[str | None, Query(pattern=SLUG)] = None,
    rows: Annotated[int, Query(ge=0, le=queries.MAX_PAGE, description="Also list up to this many dropped rows.")] = 20,
) -> dict[str, Any]:
    from ..ops.lineage import dropped

    return queries.plain(dropped(s, ref, step=step, source=source, corpus=corpus, rows=rows))  # type: ignore[no-any-return]


@router.get("/versions/{ref}/monitor", response_model=models.Monitor, summary="Per-step monitoring figures: counts, proportions, drift")
def monitor(s: StoreDep, ref: VersionRef, corpus: Corpus = "main") -> dict[str, Any]:
    from ..ops.monitor import monitor as run

    return queries.plain(run(s, ref, corpus))  # type: ignore[no-any-return]


@router.get(
    "/versions/{ref}/transparency",
    response_model=models.Transparency,
    summary="The transparency table: every source with rows, shares, licence and legal basis",
)
def transparency(s: StoreDep, ref: VersionRef, corpus: Corpus = "main") -> dict[str, Any]:
    return queries.transparency(s, s.version(ref, corpus))


@router.get(
    "/versions/{ref}/transparency.csv",
    summary="The transparency table as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def transparency_csv(s: StoreDep, ref: VersionRef, corpus: Corpus = "main") -> Response:
    v = s.version(ref, corpus)
    name = f"transparency-{v.tag or v.id[:12]}.csv"
    return Response(
        queries.transparency_csv(s, v),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_safe(name)}"'},
    )


@router.get("/versions/{ref}/eu-ai-act", response_model=models.EUAIAct, summary="The EU AI Act public summary of training content")
def eu_ai_act(s: StoreDep, ref: VersionRef, corpus: Corpus = "main") -> dict[str, Any]:
    return queries.eu_ai_act(s, s.version(ref, corpus))


# -- diff -----------------------------------------------------------------------------------------------


@router.get("/diff", response_model=models.DiffSummary, summary="What changed from version a to version b: sources and rows per source")
def diff(
    s: StoreDep,
    a: Annotated[str, Query(pattern=REF, description="The older version.")],
    b: Annotated[str, Query(pattern=REF, description="The newer version.")],
    corpus: Corpus = "main",
) -> dict[str, Any]:
    return queries.diff_summary(s, a, b, corpus)


@router.get(
    "/diff/rows", response_model=models.DiffRows, summary="One page of the row ids added to (or removed from) b, with their sources"
)
def diff_rows(
    s: StoreDep,
    a: Annotated[str, Query(pattern=REF)],
    b: Annotated[str, Query(pattern=REF)],
    kind: Literal["added", "removed"] = "added",
    corpus: Corpus = "main",
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    return queries.diff_rows(s, a, b, kind=kind, offset=offset, limit=limit, corpus=corpus)


# -- sources --------------------------------------------------------------------------------------------


@router.get(
    "/sources", response_model=list[models.Source], summary="Every source with licence, legal basis, collection period and refresh date"
)
def sources(s: StoreDep) -> list[dict[str, Any]]:
    return [r.to_dict() for r in s.sources.list()]


@router.get("/sources/{source_id}", response_model=models.Source, summary="One source")
def source(s: StoreDep, source_id: Annotated[str, Path(pattern=SLUG)]) -> dict[str, Any]:
    return s.sources.get(source_id).to_dict()  # type: ignore[no-any-return]


# -- rows -----------------------------------------------------------------------------------------------


@router.get(
    "/rows/{row_id}",
    response_model=models.RowTrace,
    summary="Everything known about a row: content, provenance, steps, drops, versions, runs",
)
def row(s: StoreDep, row_id: RowId) -> dict[str, Any]:
    return queries.row_detail(s, row_id)


@router.get(
    "/rows/{row_id}/graph", response_model=models.LineageGraph, summary="The row's lineage graph: source → ingest → steps → versions → runs"
)
def row_graph(s: StoreDep, row_id: RowId) -> dict[str, Any]:
    return queries.lineage_graph(s, row_id)


@router.get("/rows/{row_id}/why", response_model=models.Why, summary="Why the row is (or is not) in a version, in one paragraph")
def row_why(s: StoreDep, row_id: RowId, version: Annotated[str, Query(pattern=REF)] = "HEAD", corpus: Corpus = "main") -> dict[str, Any]:
    from ..ops.why import why

    res = why(s, row_id, version, corpus)
    return {k: res[k] for k in ("row_id", "version_id", "in_version", "explanation")}


@router.get(
    "/rows/{row_id}/proof",
    summary="A Merkle proof that the row is (or, with absent=true, is not) in a version; the JSON 'rowtrail check-proof' reads",
)
def row_proof(
    s: StoreDep,
    row_id: RowId,
    version: Annotated[str, Query(pattern=REF)] = "HEAD",
    absent: bool = False,
    corpus: Corpus = "main",
    download: bool = False,
) -> Response:
    import orjson

    proof = s.prove(row_id, version, absent=absent, corpus=corpus)
    headers = {}
    if download:
        label = s.version(version, corpus).tag or str(proof.get("version_id", ""))[:12]
        headers["Content-Disposition"] = f'attachment; filename="{_safe(f"proof-{row_id[:12]}-{label}.json")}"'
    return Response(orjson.dumps(proof, option=orjson.OPT_INDENT_2) + b"\n", media_type="application/json", headers=headers)


# -- runs -----------------------------------------------------------------------------------------------


@router.get("/runs", response_model=list[models.RunSummary], summary="Training runs recorded in the store, oldest first")
def runs(s: StoreDep) -> list[dict[str, Any]]:
    return queries.plain(s.runs())  # type: ignore[no-any-return]


@router.get(
    "/runs/{run_id}",
    response_model=models.RunDetail,
    summary="A run: version, config, steps, parameter groups",
)
def run(s: StoreDep, run_id: Annotated[str, Path(pattern=SLUG)]) -> dict[str, Any]:
    return queries.run_detail(s, run_id)


@router.get(
    "/runs/{run_id}/attribution",
    response_model=models.Attribution,
    summary="Rows (or sources) behind a parameter group's updates, with their admission rules",
)
def run_attribution(
    s: StoreDep,
    run_id: Annotated[str, Path(pattern=SLUG)],
    group: Annotated[str, Query(min_length=1, max_length=200)],
    by: Literal["row", "source"] = "row",
    top: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 20,
) -> dict[str, Any]:
    return queries.attribute_group(s, run_id, group, by=by, top=top)


# -- verify and search ----------------------------------------------------------------------------------


@router.get(
    "/verify",
    response_model=models.VerifyStatus,
    summary="The store's verification status (computed in the background, refreshed when the journal moves)",
)
def verify_status(request: Request, s: StoreDep) -> dict[str, Any]:
    return request.app.state.verifier.status(s)  # type: ignore[no-any-return]


@router.get("/search", response_model=models.SearchResult, summary="Rows by row id, content hash or source key")
def search(
    s: StoreDep, q: Annotated[str, Query(min_length=1, max_length=1000)], limit: Annotated[int, Query(ge=1, le=queries.SEARCH_HITS)] = 20
) -> dict[str, Any]:
    return queries.search(s, q, limit)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)


# -- annotator agreement and output search (optional packages) -----------------------------------------


@router.get(
    "/versions/{ref}/agreement",
    response_model=models.Agreement,
    summary="Annotator agreement per week (or guideline, annotator, batch) and each annotator's drift",
)
def agreement(
    s: StoreDep,
    ref: VersionRef,
    corpus: Corpus = "main",
    by: Literal["week", "guideline", "annotator", "batch"] = "week",
    level: Literal["nominal", "ordinal", "interval"] | None = None,
    permutations: Annotated[int, Query(ge=19, le=999, description="Shuffles for the drift test's p-value.")] = 199,
) -> dict[str, Any]:
    return queries.agreement(s, ref, by=by, level=level, permutations=permutations, corpus=corpus)


@router.get(
    "/versions/{ref}/indexes",
    response_model=list[dict[str, Any]],
    summary="The version's output-search indexes (spans, lexical, embedding)",
)
def indexes(s: StoreDep, ref: VersionRef, corpus: Corpus = "main") -> list[dict[str, Any]]:
    return queries.indexes(s, ref, corpus)


@router.post(
    "/search-output",
    response_model=models.OutputSearch,
    summary="Trace a model output: its verbatim spans in the version's rows and the most similar rows, with provenance",
)
def search_output(s: StoreDep, body: models.OutputSearchRequest) -> dict[str, Any]:
    return queries.search_output(s, body.text, body.version, k=body.k, corpus=body.corpus)
