"""``openlineage``: a version's history as OpenLineage run events (JSON Lines), or posted to a
lineage backend (Marquez, DataHub, …) with the OpenLineage client's HTTP transport.

Events are built with ``openlineage-python``'s own classes (``openlineage.client.event_v2``,
``facet_v2``) and serialized by its ``Serde``, so ``_producer`` and ``_schemaURL`` are what the library
sets. Needs ``pip install 'rowtrail[openlineage]'``.

Mapping: one run per journal entry that led to the version (the history walked by
``rowtrail.exports.prov.history``), in journal order, each as two ``RunEvent`` objects with the same
``runId``, as the spec asks of a run: ``START`` (event time: the run's start — an ingest's
``ingested_at``, a commit's ``created_at``; a pipeline step's start is not recorded, so the pipeline
entry's journal time) with the job, the inputs and the outputs by name, then ``COMPLETE`` (event time:
the entry's journal time) with the outputs' facets and statistics as well:

- **ingest** ``ing-…`` — job ``<corpus>.ingest.<source ids>``; inputs: each source as dataset
  ``sources/<source_id>`` (facet ``version`` = the snapshot ``S@n``; ``rowtrail`` facet with kind, uri,
  licence, legal basis, collection period, generator) and each input file with a SHA-256 (``rowtrail``
  facet: digest, bytes, the recorded path), named as OpenLineage names files: the path the ingest
  recorded, in namespace ``file`` (an absolute path; a relative one stays as recorded, since the store
  does not keep the working directory it was relative to), ``s3://<bucket>`` / ``gs://<bucket>`` with
  the object key, ``file://<host>`` with the path for a ``file://host/path`` URL; output:
  ``<corpus>/ingests/<ingest_id>`` (output statistics: rows; ``rowtrail`` facet: counts, segments).
  Nominal start: ``ingested_at``.
- **pipeline step** k of the run behind a version — job ``<corpus>.pipeline.<k>.<step name>`` (job
  facet ``documentation``: use, version and params); input: the input set ``<corpus>/inputs/<version id>``
  (``rowtrail`` facet: ``inputs_root``) or step k-1's output; output ``<corpus>/runs/<run>/after/<k>``
  (output statistics: rows out; ``rowtrail`` facet: rows in/out, weights, drops by reason, edges). The run
  facet ``rowtrail`` holds the step id, definition and code fingerprint.
- **commit** — job ``<corpus>.commit``; inputs: the last step's output (or the input set) and the parent
  version; output: the version ``<corpus>/versions/<version id>`` with facets ``version`` (the version id),
  ``schema`` (the columns of ``rowtrail rows``, types from a sample of rows), output statistics (rows)
  and ``rowtrail`` (tag, content id, ``merkle_root``, ``content_root``, ``weights_sha256``, row count,
  weight total, per-source rows and weight, signed). The run facet ``rowtrail`` names the author, message
  and signing key id.

Every run also carries ``processing_engine`` (rowtrail and its version) and every job ``jobType``
(``BATCH`` / ``ROWTRAIL`` / ``INGEST`` | ``PIPELINE_STEP`` | ``COMMIT``). Removals (``rowtrail rm``) are
not runs; their effect shows in the next input set. Run ids are UUIDv7 derived from the run's start time
and its journal entry's digest (``generate_static_uuid``), so exporting a version again gives the same events.

Options:

- ``namespace``: the OpenLineage namespace of jobs and datasets (default ``rowtrail://<store path>``).
- ``url``: post every event to this OpenLineage endpoint (``OpenLineageClient`` with ``HttpTransport``);
  with a ``path`` the JSON Lines file is written too (first), without one nothing goes to stdout.
- ``endpoint`` (default ``api/v1/lineage``), ``api_key`` (a bearer token), ``timeout`` (seconds, default 5).
- ``corpus``: the corpus a ref such as ``HEAD`` names.
"""

from __future__ import annotations

import datetime as _dt
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

from .base import Exporter, ExportError, ExportResult, Progress, check_target, register, resolve_version
from .prov import Commit, check_options, history, snapshot_at, snapshot_records, write_document

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version

PRODUCER = "https://rowtrail.dev/openlineage/producer"
FACET_SCHEMA = "https://rowtrail.dev/spec/openlineage/1-0-0/RowtrailFacets.json#/$defs/"
DEFAULT_ENDPOINT = "api/v1/lineage"
DEFAULT_TIMEOUT = 5.0
SAMPLE_ROWS = 1000


def _require() -> None:
    try:
        import openlineage.client  # noqa: F401
    except ImportError:
        raise ExportError("format 'openlineage' needs the OpenLineage client: pip install 'rowtrail[openlineage]'") from None


@lru_cache(maxsize=1)
def facet_classes() -> tuple[Any, Any]:
    """The custom ``rowtrail`` dataset and run facets (classes made on first use: the library is optional)."""
    import attr
    from openlineage.client.facet_v2 import DatasetFacet, RunFacet

    @attr.define
    class RowtrailDatasetFacet(DatasetFacet):  # type: ignore[misc]
        """What rowtrail knows about a dataset: row counts, digests, source terms."""

        kind: str
        rows: int | None = attr.field(default=None)
        weightTotal: float | None = attr.field(default=None)  # noqa: N815
        digests: dict[str, str] | None = attr.field(default=None)
        details: dict[str, Any] | None = attr.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA + "RowtrailDatasetFacet"

    @attr.define
    class RowtrailRunFacet(RunFacet):  # type: ignore[misc]
        """The journal entry a run stands for."""

        entryKind: str  # noqa: N815
        journalSeq: int  # noqa: N815
        journalDigest: str  # noqa: N815
        details: dict[str, Any] | None = attr.field(default=None)

        @staticmethod
        def _get_schema() -> str:
            return FACET_SCHEMA + "RowtrailRunFacet"

    return RowtrailDatasetFacet, RowtrailRunFacet


def _parse_time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Builder:
    def __init__(self, store: Store, v: Version, namespace: str) -> None:
        from .. import __version__

        self.store = store
        self.v = v
        self.ns = namespace
        self.version = __version__
        self.digests = {e["seq"]: d for e, d in zip(store.state.entries, store.state.digests)}
        self.snapshots = snapshot_records(store)

    # -- pieces ------------------------------------------------------------------------------------
    def run(self, entry: dict[str, Any], start: str, salt: str, details: dict[str, Any]) -> Any:
        from openlineage.client.event_v2 import Run
        from openlineage.client.facet_v2 import nominal_time_run, processing_engine_run
        from openlineage.client.uuid import generate_static_uuid

        _ds, run_facet = facet_classes()
        digest = self.digests[entry["seq"]]
        run_id = generate_static_uuid(_parse_time(start), f"rowtrail:{digest}:{salt}".encode())
        return Run(
            runId=str(run_id),
            facets={
                "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime=start, nominalEndTime=entry["at"], producer=PRODUCER),
                "processing_engine": processing_engine_run.ProcessingEngineRunFacet(version=self.version, name="rowtrail", producer=PRODUCER),
                "rowtrail": run_facet(entryKind=entry["kind"], journalSeq=entry["seq"], journalDigest=digest, details=details, producer=PRODUCER),
            },
        )

    def job(self, name: str, job_type: str, description: str | None = None) -> Any:
        from openlineage.client.event_v2 import Job
        from openlineage.client.facet_v2 import documentation_job, job_type_job

        facets: dict[str, Any] = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="ROWTRAIL", jobType=job_type, producer=PRODUCER)}
        if description:
            facets["documentation"] = documentation_job.DocumentationJobFacet(description=description, producer=PRODUCER)
        return Job(namespace=self.ns, name=name, facets=facets)

    def facet(self, what: str, /, rows: int | None = None, weight: float | None = None, digests: dict[str, str] | None = None, **details: Any) -> Any:
        ds_facet, _run = facet_classes()
        return ds_facet(kind=what, rows=rows, weightTotal=weight, digests=digests or None, details={k: v for k, v in details.items() if v is not None} or None, producer=PRODUCER)

    def dataset(self, cls: Any, name: str, facets: dict[str, Any], rows: int | None = None, namespace: str | None = None) -> Any:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import output_statistics_output_dataset

        if cls is OutputDataset and rows is not None:
            stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows, producer=PRODUCER)
            return cls(namespace=namespace or self.ns, name=name, facets=facets, outputFacets={"outputStatistics": stats})
        return cls(namespace=namespace or self.ns, name=name, facets=facets)

    def version_facet(self, text: str) -> Any:
        from openlineage.client.facet_v2 import dataset_version_dataset

        return dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=text, producer=PRODUCER)

    def run_events(self, entry: dict[str, Any], start: str, run: Any, job: Any, inputs: list[Any], outputs: list[Any]) -> list[Any]:
        """The run's ``START`` (at ``start``; outputs by name only) and ``COMPLETE`` (at the entry's time) events."""
        from openlineage.client.event_v2 import OutputDataset, RunEvent, RunState

        named = [OutputDataset(namespace=o.namespace, name=o.name) for o in outputs]
        return [
            RunEvent(eventType=RunState.START, eventTime=start, run=run, job=job, inputs=inputs, outputs=named, producer=PRODUCER),
            RunEvent(eventType=RunState.COMPLETE, eventTime=entry["at"], run=run, job=job, inputs=inputs, outputs=outputs, producer=PRODUCER),
        ]

    # -- events ------------------------------------------------------------------------------------
    def ingest(self, e: dict[str, Any]) -> list[Any]:
        from openlineage.client.event_v2 import InputDataset, OutputDataset

        sources = sorted(e.get("sources") or {})
        inputs = []
        for sid in sources:
            snap = snapshot_at(self.snapshots, sid, e["seq"])
            rec = self.snapshots.get(snap or "", {})
            facets: dict[str, Any] = {
                "rowtrail": self.facet(
                    "source",
                    **{k: rec.get(k) for k in ("source_id", "kind", "uri", "license", "legal_basis", "collected", "refreshed_at", "owner", "generator")},
                    snapshot=snap,
                )
            }
            if snap:
                facets["version"] = self.version_facet(snap)
            inputs.append(self.dataset(InputDataset, f"sources/{sid}", facets))
        for f in e.get("files") or []:
            if f.get("sha256"):
                namespace, name = file_name(str(f["name"]))
                facets = {"rowtrail": self.facet("file", digests={"sha256": f["sha256"]}, bytes=f.get("bytes"), path=str(f["name"]))}
                inputs.append(self.dataset(InputDataset, name, facets, namespace=namespace))
        counts = e.get("counts") or {}
        out = self.dataset(
            OutputDataset,
            f"{e['corpus']}/ingests/{e['ingest_id']}",
            {"rowtrail": self.facet("ingest", rows=counts.get("rows"), counts=counts, sources=e.get("sources"), segments=[s["seg"] for s in e.get("segments") or []])},
            rows=counts.get("rows"),
        )
        start = e.get("ingested_at") or e["at"]
        run = self.run(e, start, "ingest", {"ingest_id": e["ingest_id"], "options": e.get("options")})
        return self.run_events(e, start, run, self.job(f"{e['corpus']}.ingest.{'+'.join(sources) or 'none'}", "INGEST"), inputs, [out])

    def inputs_dataset(self, cls: Any, c: Commit) -> Any:
        content = c.record["content"]
        return self.dataset(cls, f"{c.info.corpus}/inputs/{c.version_id}", {"rowtrail": self.facet("input-set", digests={"inputs_root": content["inputs_root"]})})

    def steps(self, c: Commit) -> list[Any]:
        from openlineage.client.event_v2 import InputDataset, OutputDataset

        entry = c.pipeline
        if entry is None:
            return []
        run_digest = c.manifest["run"]
        events = []
        for k, (sid, definition, report) in enumerate(c.steps()):
            before = self.inputs_dataset(InputDataset, c) if k == 0 else self.dataset(InputDataset, f"{c.info.corpus}/runs/{run_digest}/after/{k - 1}", {})
            after = self.dataset(
                OutputDataset,
                f"{c.info.corpus}/runs/{run_digest}/after/{k}",
                {
                    "rowtrail": self.facet(
                        "step-output",
                        rows=report.get("rows_out"),
                        weight=report.get("weight_out"),
                        rows_in=report.get("rows_in"),
                        weight_in=report.get("weight_in"),
                        dropped=report.get("dropped"),
                        edges=report.get("edges"),
                        reweighted=report.get("reweighted"),
                    )
                },
                rows=report.get("rows_out"),
            )
            name = definition.get("name") or "step"
            doc = f"{definition.get('use') or name} v{definition.get('version')}: params {definition.get('params')}"
            run = self.run(entry, entry["at"], f"step:{k}:{sid}", {"step_id": sid, "index": k, "run": run_digest, "definition": definition})
            events += self.run_events(entry, entry["at"], run, self.job(f"{c.info.corpus}.pipeline.{k}.{name}", "PIPELINE_STEP", doc), [before], [after])
        return events

    def commit(self, c: Commit, parent: Commit | None) -> list[Any]:
        from openlineage.client.event_v2 import InputDataset, OutputDataset
        from openlineage.client.facet_v2 import schema_dataset

        rec = c.record
        content = rec["content"]
        steps = c.steps()
        if steps and c.pipeline is not None:
            inputs = [self.dataset(InputDataset, f"{c.info.corpus}/runs/{c.manifest['run']}/after/{len(steps) - 1}", {})]
        else:
            inputs = [self.inputs_dataset(InputDataset, c)]
        if parent is not None:
            inputs.append(self.dataset(InputDataset, f"{parent.info.corpus}/versions/{parent.version_id}", {"version": self.version_facet(parent.version_id)}))
        facets: dict[str, Any] = {
            "version": self.version_facet(c.version_id),
            "rowtrail": self.facet(
                "version",
                rows=content["row_count"],
                weight=content["weight_total"],
                digests={k: content[k] for k in ("merkle_root", "content_root", "weights_sha256", "inputs_root")} | {"content_id": rec["content_id"], "version_id": c.version_id},
                tag=rec["tag"],
                per_source=content["per_source"],
                signed=c.info.envelope is not None,
            ),
        }
        if c.version_id == self.v.id:
            fields = [schema_dataset.SchemaDatasetFacetFields(name=f.name, type=str(f.type), ordinal_position=i + 1) for i, f in enumerate(self.schema())]
            facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)
        out = self.dataset(OutputDataset, f"{c.info.corpus}/versions/{c.version_id}", facets, rows=content["row_count"])
        details = {"version_id": c.version_id, "tag": rec["tag"], "message": rec["message"], "author": rec["author"], "created_at": rec["created_at"], "signing_key": c.keyid}
        run = self.run(c.entry, rec["created_at"], "commit", details)
        return self.run_events(c.entry, rec["created_at"], run, self.job(f"{c.info.corpus}.commit", "COMMIT", None), inputs, [out])

    def schema(self) -> Any:
        from ..query.rows import rows

        return rows(self.store, self.v.id, limit=SAMPLE_ROWS).schema

    def events(self) -> list[Any]:
        out: list[Any] = []
        parent: Commit | None = None
        for c in history(self.store, self.v):
            for e in c.ingests:
                out += self.ingest(e)
            out += self.steps(c)
            out += self.commit(c, parent)
            parent = c
        return out


def build_events(store: Store, v: Version, namespace: str | None = None) -> list[Any]:
    """The OpenLineage ``RunEvent`` objects of ``v``'s history (see the module docstring)."""
    _require()
    return _Builder(store, v, namespace or default_namespace(store)).events()


def file_name(path: str) -> tuple[str, str]:
    """The OpenLineage (namespace, name) of a file the journal recorded, by the dataset naming
    convention (``openlineage.client.naming.dataset``): a plain path or a ``file:///`` URL in namespace
    ``file``; ``s3://`` / ``gs://`` by bucket and object key; any other URL ``scheme://authority`` and its path."""
    from urllib.parse import urlsplit

    from openlineage.client.naming.dataset import GCS, S3, LocalFileSystem, RemoteFileSystem

    if "://" not in path:
        naming: Any = LocalFileSystem(path=path)
    else:
        url = urlsplit(path)
        key = url.path.lstrip("/")
        if url.scheme in ("s3", "s3a") and url.netloc and key:
            naming = S3(bucket_name=url.netloc, object_key=key)
        elif url.scheme in ("gs", "gcs") and url.netloc and key:
            naming = GCS(bucket_name=url.netloc, object_key=key)
        elif url.scheme == "file" and url.netloc in ("", "localhost"):
            naming = LocalFileSystem(path=url.path)
        elif url.scheme == "file":
            naming = RemoteFileSystem(host=url.netloc, path=url.path)
        else:
            return f"{url.scheme}://{url.netloc}", url.path
    return naming.get_namespace(), naming.get_name()


def default_namespace(store: Store) -> str:
    if "://" in store.url:  # an object store: its URL, not the local mirror
        return "rowtrail://" + store.url.split("://", 1)[1].strip("/")
    return "rowtrail://" + store.path.resolve().as_posix().lstrip("/")


def post(events: list[Any], url: str, endpoint: str = DEFAULT_ENDPOINT, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Post events with the OpenLineage client's HTTP transport; returns how many were posted."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider

    auth = ApiKeyTokenProvider({"apiKey": api_key}) if api_key else TokenProvider({})
    transport = HttpTransport(HttpConfig(url=url, endpoint=endpoint, timeout=timeout, auth=auth))
    client = OpenLineageClient(transport=transport)
    sent = 0
    try:
        for event in events:
            try:
                client.emit(event)
            except Exception as exc:  # requests' errors and HTTP status errors alike
                raise ExportError(
                    f"posting OpenLineage event {sent + 1} of {len(events)} to {url.rstrip('/')}/{endpoint.lstrip('/')} failed ({exc}); "
                    f"{sent} were posted — check the URL and that the lineage server is up, then export again (events are idempotent: same run ids)"
                ) from None
            sent += 1
    finally:
        client.close(timeout)
    return sent


@register
class OpenLineageExporter(Exporter):
    name = "openlineage"
    suffixes = (".openlineage.jsonl", ".ol.jsonl")
    description = "OpenLineage run events (JSON Lines) for ingests, pipeline steps and commits; url= posts them"
    writes_stdout = True
    options: ClassVar[dict[str, type | tuple[type, ...]]] = {"corpus": str, "namespace": str, "url": str, "endpoint": str, "api_key": str, "timeout": (int, float)}

    def write(self, store: Store, version: str | Version, path: str | os.PathLike[str] | None, *, overwrite: bool = False, progress: Progress | None = None, **options: Any) -> ExportResult:
        check_options(self.name, options, self.options)
        url = options.get("url")
        if url is not None and not url.startswith(("http://", "https://")):
            raise ExportError(f"url must be an http:// or https:// OpenLineage endpoint, not {url!r}")
        timeout = float(options.get("timeout") or DEFAULT_TIMEOUT)
        if timeout <= 0:
            raise ExportError(f"timeout must be a positive number of seconds, not {options.get('timeout')!r}")
        _require()
        if path is not None:
            check_target(path, overwrite)
        from openlineage.client.serde import Serde

        v = resolve_version(store, version, options.get("corpus") or "main")
        namespace = options.get("namespace") or default_namespace(store)
        events = build_events(store, v, namespace)
        data = "".join(Serde.to_json(e) + "\n" for e in events).encode()
        details: dict[str, Any] = {"events": len(events), "namespace": namespace, "url": url}
        if path is not None or url is None:
            result = write_document(self.name, store, v, path, data, overwrite, details)
        else:
            result = ExportResult(format=self.name, path=None, rows=v.row_count, bytes=0, version_id=v.id, tag=v.tag, content_id=v.content_id, merkle_root=v.content["merkle_root"], files=[], details={"corpus": v.corpus, **details})
        if url is not None:
            sent = post(events, url, options.get("endpoint") or DEFAULT_ENDPOINT, options.get("api_key"), timeout)
            result.details["posted"] = sent
        if progress:
            progress("openlineage", len(events), len(events))
        return result
