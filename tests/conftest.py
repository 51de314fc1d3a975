"""Shared fixtures for the test suite (the library's own plugin, ``rowtrail.testing``, adds
``rowtrail_home``, ``tmp_store`` and ``write_jsonl``). Each section below belongs to one area; add
new fixtures in a section of their own."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# -- object storage: a real S3 server (moto) on loopback -----------------------------------------------
#
# ``s3_server`` starts moto's server once per test session (per xdist worker) on 127.0.0.1 and a
# free port, and creates one bucket. ``s3_env`` points the standard AWS variables at it (subprocesses
# inherit them) and gives the test its own mirror directory (ROWTRAIL_CACHE). ``s3_url`` is a fresh
# store URL. ``any_store`` is a new, empty store on each backend in turn: tests that take it run on a
# local directory and on S3.

S3_BUCKET = "rowtrail-tests"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    info = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    import boto3

    boto3.client(
        "s3", endpoint_url=info["AWS_ENDPOINT_URL"], aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).create_bucket(Bucket=S3_BUCKET)
    yield info
    server.stop()


@pytest.fixture(scope="session")
def s3_server_without_conditional_writes(s3_server: dict[str, str]) -> Iterator[dict[str, str]]:
    """A second endpoint onto the same moto backend (same buckets and objects) that drops
    ``If-None-Match`` and ``If-Match`` from every request before moto sees it: an S3-compatible server
    that ignores conditional writes, as some still do. Same keys and region as ``s3_server``."""
    import threading

    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        for name in ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH"):
            environ.pop(name, None)
        return moto_app(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield dict(s3_server, AWS_ENDPOINT_URL=f"http://{host}:{port}")
    server.shutdown()
    thread.join()


@pytest.fixture
def s3_env(s3_server: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "ROWTRAIL_STORAGE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROWTRAIL_CACHE", str(tmp_path / "rowtrail-cache"))
    return dict(s3_server, ROWTRAIL_CACHE=str(tmp_path / "rowtrail-cache"))


@pytest.fixture
def s3_url(s3_env: dict[str, str]) -> str:
    return f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}/store"


@pytest.fixture
def s3(s3_env: dict[str, str]) -> Any:
    """A plain boto3 client for the test server (to damage or inspect a store from outside)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_env["AWS_ENDPOINT_URL"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
        region_name=s3_env["AWS_DEFAULT_REGION"],
    )


@pytest.fixture(params=["local", "s3"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a new store goes: a directory, or (with the S3 server running) an s3:// URL."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_url")


@pytest.fixture
def any_store(store_location: str, rowtrail_home: Path) -> Any:
    import rowtrail as rt

    return rt.init(store_location)


@pytest.fixture
def tmp_store(request: pytest.FixtureRequest, tmp_path: Path, rowtrail_home: Path) -> Any:
    """The plugin's ``tmp_store`` (a new store in a temporary directory), or, with
    ``ROWTRAIL_TEST_STORE=s3`` in the environment, a new store on the moto server: the whole suite's
    store tests then run against S3 (``ROWTRAIL_TEST_STORE=s3 python -m pytest tests/unit``)."""
    import rowtrail as rt

    if os.environ.get("ROWTRAIL_TEST_STORE") == "s3":
        return rt.init(request.getfixturevalue("s3_url"))
    return rt.init(tmp_path / "store")
