"""schemathesis against the published OpenAPI schema of ``rowtrail serve``: generated requests for
every operation (valid and invalid parameters) over a real store never get a 500, and every
answer matches the schema the server publishes (documented status codes, response models)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import rowtrail as rt  # noqa: E402
from rowtrail.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    from rowtrail.versions.signing import keygen

    root = tmp_path_factory.mktemp("serve-schema")
    mp = pytest.MonkeyPatch()
    mp.setenv("ROWTRAIL_HOME", str(root / "home"))
    mp.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
    keygen()
    s = rt.init(root / "store")
    s.sources.add("docs", kind="crawl", license="CC-BY-4.0", legal_basis="tdm-exception")
    (root / "d.jsonl").write_text("".join(f'{{"id": {i}, "text": "row {i} {"y" * i}"}}\n' for i in range(30)))
    s.ingest(str(root / "d.jsonl"), source="docs", key_field="id")
    s.commit("one", tag="v1")
    s.apply([rt.steps.filter("length(text) > 8", reason="too-short")])
    s.commit("two", tag="v2")
    app = create_app(s.path, verify_on_start=False)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    mp.undo()


def test_no_server_error_and_answers_match_the_schema(api_schema):
    """Each operation, with valid and with invalid parameters (a bounded number of examples each)."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    checked = 0
    for result in api_schema.get_all_operations():
        op = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            positive = mode is schemathesis.GenerationMode.POSITIVE

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
            def run(case):
                response = case.call()
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} {case.query}: {response.status_code} {response.text[:500]}"
                )
                if positive or response.status_code < 400:  # noqa: B023 - run() is called at once, in this iteration
                    case.validate_response(
                        response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
                    )

            try:
                run()
            except Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE  # an operation without parameters has no invalid form
        checked += 1
    assert checked >= 20  # every operation the API publishes
