"""Response models of the HTTP API, so ``/openapi.json`` says what each endpoint returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """An error: what went wrong and, where there is one, what to do next."""

    error: str = Field(description="The error type, e.g. RefError.")
    detail: str


class StoreInfo(BaseModel):
    path: str
    rowtrail_version: str
    corpora: dict[str, str | None] = Field(description="corpus → head version id")
    versions: int
    sources: int
    runs: int
    journal_entries: int
    features: dict[str, bool] = Field(description="optional explorer pages available on this server")


class Signer(BaseModel):
    keys: list[dict[str, Any]]


class VersionSummary(BaseModel):
    version_id: str
    corpus: str
    tag: str | None
    message: str
    author: str | None
    created_at: str
    parent: str | None
    signed: bool
    signer: Signer | None
    content_id: str
    row_count: int
    sources: int
    merkle_root: str
    weight_total: float
    pipeline_steps: int


class VersionDetail(VersionSummary):
    record: dict[str, Any]
    per_source: dict[str, dict[str, float]]
    steps: list[dict[str, Any]]
    source_snapshots: dict[str, Any]
    admission: dict[str, Any] | None


class DiffSourceCounts(BaseModel):
    before: int
    after: int
    added: int
    removed: int


class DiffSummary(BaseModel):
    before: str
    after: str
    before_tag: str | None
    after_tag: str | None
    sources_added: list[str]
    sources_dropped: list[str]
    sources_changed: list[str]
    rows_added: int
    rows_removed: int
    chunks_shared: int
    per_source: dict[str, DiffSourceCounts]


class DiffRow(BaseModel):
    row_id: str
    source_id: str | None
    weight: float


class DiffRows(BaseModel):
    before: str
    after: str
    kind: str
    offset: int
    limit: int
    total: int
    rows: list[DiffRow]


class Source(BaseModel):
    source_id: str
    kind: str
    uri: str | None = None
    license: str | None = None
    legal_basis: str | None = None
    collected: str | None = None
    refreshed_at: str | None = None
    owner: str | None = None
    generator: str | None = None
    snapshot: str | None = None
    created_at: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class RowsPage(BaseModel):
    version_id: str
    tag: str | None
    source: str | None
    offset: int
    limit: int
    total: int
    content_columns: list[str] = Field(description="content fields seen on this page")
    columns: list[str] = Field(description="provenance columns seen on this page (and weight)")
    rows: list[dict[str, Any]] = Field(description="provenance columns, weight, and content (an object; null when purged)")


class RowTrace(BaseModel):
    row_id: str
    source: dict[str, Any]
    provenance: dict[str, Any]
    content: Any
    ingest: dict[str, Any]
    derived_from: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    descendants: list[dict[str, Any]]
    drops: list[dict[str, Any]]
    lineage: list[dict[str, Any]]
    versions: list[dict[str, Any]]
    runs: list[dict[str, Any]]


class GraphNode(BaseModel):
    id: str
    kind: str = Field(description="source, ingest, row, focus (the row asked for), drop, version or run")
    label: str
    layer: int
    row_id: str | None = None
    version_id: str | None = None
    run_id: str | None = None
    license: str | None = None
    legal_basis: str | None = None
    admitted_by: str | None = None


class GraphEdge(BaseModel):
    source: str
    target: str
    label: str


class LineageGraph(BaseModel):
    row_id: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class Why(BaseModel):
    row_id: str
    version_id: str
    in_version: bool
    explanation: str


class Drops(BaseModel):
    version_id: str
    tag: str | None = None
    run: str | None
    steps: list[dict[str, Any]]
    total: int
    rows: list[dict[str, Any]]


class Monitor(BaseModel):
    version_id: str
    tag: str | None
    steps: list[dict[str, Any]]
    thresholds: dict[str, Any]


class Transparency(BaseModel):
    format: str
    version: dict[str, Any]
    totals: dict[str, Any]
    sources: list[dict[str, Any]]
    breakdowns: dict[str, list[dict[str, Any]]]
    rowtrail_version: str


class EUAIAct(BaseModel):
    summary: dict[str, Any]
    markdown: str


class RunSummary(BaseModel):
    run_id: str
    version_id: str
    corpus: str | None = None
    source: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    steps: int | None = None
    rows_consumed: int | None = None
    distinct_rows: int | None = None
    rows_outside_version: int | None = None
    config: Any = None
    code: Any = None


class RunDetail(RunSummary):
    groups: list[str]
    features: bool


class Attribution(BaseModel):
    run_id: str
    group: str
    by: str
    total: float
    update_sq: float
    top: list[dict[str, Any]]


class VerifyStatus(BaseModel):
    state: str = Field(description="idle, running, done or failed")
    sample: int | None = Field(description="rows recomputed per version (None: every row)")
    started_at: str | None
    finished_at: str | None
    seconds: float | None
    journal_head: str | None = Field(description="the journal head the report is about")
    ok: bool | None
    report: dict[str, Any] | None
    error: str | None = None


class SearchHit(BaseModel):
    row_id: str
    source_id: str | None
    source_key: str | None
    content_sha256: str | None
    matched: str


class SearchResult(BaseModel):
    query: str
    hits: list[SearchHit]


class Agreement(BaseModel):
    version_id: str
    tag: str | None
    judgements: int
    drift_method: dict[str, Any]
    tasks: list[dict[str, Any]] = Field(
        description="per task: overall figures, groups (e.g. weeks) with alpha and kappas, annotators with drift flags"
    )


class OutputSearchRequest(BaseModel):
    text: str = Field(min_length=1, max_length=20_000, description="The model output to trace.")
    version: str = Field("HEAD", pattern=r"^[A-Za-z0-9._@~^:+-]{1,200}$")
    corpus: str = Field("main", pattern=r"^[A-Za-z0-9._:@+-]{1,200}$")
    k: int = Field(10, ge=0, le=100, description="Most similar rows to list.")


class OutputSearch(BaseModel):
    version_id: str
    tag: str | None
    output_tokens: int
    tokens_in_spans: int
    spans_found: int
    spans: list[dict[str, Any]]
    similar: Any
    by_source: list[dict[str, Any]]
    summary: str | None
    settings: dict[str, Any]
