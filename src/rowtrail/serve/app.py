"""The FastAPI application: ``create_app(store_path, token=None)``.

- **Read-only.** Routes only call read verbs, on ``Store`` objects lent from a small pool (a store
  holds no lock and re-reads the journal whenever ``HEAD.json`` moves, so a commit made while the
  server runs shows up on the next request; reusing a few stores keeps their caches warm).
- **Auth.** With a token, every request needs ``Authorization: Bearer <token>`` or the cookie the
  explorer sets after ``/?token=<token>``; both are compared with ``hmac.compare_digest``.
- **Headers.** A strict Content-Security-Policy (``default-src 'self'``, no inline script or style),
  ``nosniff``, no framing, no referrer. The explorer's assets ship in the package (no CDN).
- **Errors.** A malformed parameter is a 422 naming it; the library's errors become 404 (unknown
  version, source, row, run) or 400 (a request it cannot carry out as asked, e.g. an inclusion proof
  for a row the version does not hold) with its message; anything unexpected is logged and answered
  with a 500 that carries no stack trace.
- **Verify.** The store is verified in a background thread (``sample`` rows per version, or every
  row), again whenever the journal head moves; pages read the cached report. Another background
  thread computes each corpus head's governance facts at start, so the transparency and EU AI Act
  pages of a large store answer from the cache.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware

from ..errors import RefError, RowtrailError, SourceNotFoundError, StoreNotFoundError
from . import api

log = logging.getLogger("rowtrail.serve")

COOKIE = "rowtrail_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
DEFAULT_VERIFY_SAMPLE = 1000
NOT_FOUND = (RefError, SourceNotFoundError, StoreNotFoundError)


def static_dir() -> Path:
    return Path(str(resources.files("rowtrail.serve") / "static"))


class StorePool:
    """A few read-only ``Store`` objects, lent to one request at a time: a request gets the most
    recently returned one, whose caches (manifests, chunks, segment columns) are warmest; at most
    ``size`` requests read the store at once, the others wait for a free one."""

    def __init__(self, path: Path | str, size: int = 4):
        from ..store import open as open_store

        self.path = path
        self._idle = [open_store(path)]  # fail now, with the library's message, if there is no store
        self._made = 1
        self._size = size
        self._cond = threading.Condition()

    def get(self) -> Any:
        """A store for use outside a request (not returned to the pool)."""
        from ..store import open as open_store

        return open_store(self.path)

    @contextlib.contextmanager
    def lend(self) -> Iterator[Any]:
        from ..store import open as open_store

        with self._cond:
            while not self._idle and self._made >= self._size:
                self._cond.wait()
            s = self._idle.pop() if self._idle else None
            if s is None:
                self._made += 1
        if s is None:
            try:
                s = open_store(self.path)
            except BaseException:
                with self._cond:
                    self._made -= 1
                    self._cond.notify()
                raise
        try:
            yield s
        finally:
            with self._cond:
                self._idle.append(s)
                self._cond.notify()


class Verifier:
    """Runs ``store.verify`` in a background thread and keeps the last report."""

    def __init__(self, path: Path | str, sample: int | None, allow_unsigned: bool = False):
        self.path, self.sample, self.allow_unsigned = path, sample, allow_unsigned
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._s: dict[str, Any] = {
            "state": "idle",
            "sample": sample,
            "started_at": None,
            "finished_at": None,
            "seconds": None,
            "journal_head": None,
            "ok": None,
            "report": None,
            "error": None,
        }

    def start(self, head: str | None) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._s.update(state="running", started_at=_now(), finished_at=None, journal_head=head, error=None)
            self._thread = threading.Thread(target=self._run, name="rowtrail-verify", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        from ..store import open as open_store

        t0 = time.perf_counter()
        try:
            rep = open_store(self.path).verify(allow_unsigned=self.allow_unsigned, sample=self.sample)
            result = {"state": "done", "ok": rep.ok, "report": rep.to_dict()}
        except Exception as exc:  # verify never raises on damage; this is a crash worth showing
            log.exception("verify failed")
            result = {"state": "failed", "ok": False, "report": None, "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            self._s.update(result, finished_at=_now(), seconds=round(time.perf_counter() - t0, 3))

    def status(self, store: Any) -> dict[str, Any]:
        head = (store.backend.read_head() or {}).get("digest")
        with self._lock:
            stale = self._s["journal_head"] != head and self._s["state"] != "running"
        if stale:
            self.start(head)
        with self._lock:
            return dict(self._s)


def _now() -> str:
    from ..versions.journal import now_rfc3339

    return now_rfc3339()


class Guard(BaseHTTPMiddleware):
    """Security headers on every response; the bearer token (or cookie) on every request."""

    def __init__(self, app: Any, token: str | None):
        super().__init__(app)
        self.token = token.encode() if token else None

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "")
        candidates = []
        if given[:7].lower() == "bearer ":
            candidates.append(given[7:].strip())
        if COOKIE in request.cookies:
            candidates.append(request.cookies[COOKIE])
        ok = False
        for c in candidates:  # compare every candidate, in constant time each
            ok |= hmac.compare_digest(c.encode("utf-8", "surrogateescape"), self.token)
        return ok

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        if self._authorized(request):
            response = await call_next(request)
        elif request.url.path == "/" and "token" in request.query_params:
            response = self._login(request)
        else:
            response = JSONResponse(
                {
                    "error": "Unauthorized",
                    "detail": "this server needs a token: send 'Authorization: Bearer <token>', or open /?token=<token> once in the browser",
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def _login(self, request: Request) -> Response:
        given = request.query_params.get("token", "")
        assert self.token is not None
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token):
            return JSONResponse({"error": "Unauthorized", "detail": "wrong token"}, status_code=401)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, given, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp


def _features() -> dict[str, bool]:
    """Optional pages whose library parts are present in this build."""
    import importlib.util

    def has(mod: str) -> bool:
        try:
            return importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            return False

    return {"agreement": has("rowtrail.feedback.analysis"), "output_search": has("rowtrail.search") and has("pydivsufsort")}


def create_app(
    store_path: str | os.PathLike[str] | None = None,
    token: str | None = None,
    *,
    verify_sample: int | None = DEFAULT_VERIFY_SAMPLE,
    verify_on_start: bool = True,
    warm: bool = True,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The explorer and its API over the store at ``store_path`` (default: ``ROWTRAIL_STORE`` or
    ``./.rowtrail``). ``token``: require it as a bearer token. ``verify_sample``: rows recomputed
    per version by the background verify (None: every row). ``allowed_hosts``: answer only requests
    whose Host header names one of these (guards a loopback server against DNS rebinding).
    ``warm``: compute each corpus head's governance facts in the background at start."""
    from ..store import resolve_path

    path = resolve_path(store_path)
    app = FastAPI(
        title="rowtrail",
        summary="A read-only explorer of a rowtrail store: versions, diffs, sources, rows, lineage, proofs, governance, runs.",
        version=_version(),
        docs_url=None,  # Swagger UI would load its assets from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.stores = StorePool(path)
    app.state.verifier = Verifier(path, verify_sample)
    app.state.features = _features()
    app.include_router(api.router)

    @app.exception_handler(RowtrailError)
    async def _rowtrail_error(request: Request, exc: RowtrailError) -> JSONResponse:
        status = 404 if isinstance(exc, NOT_FOUND) else 400
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's documented shape (detail: a list of {loc, msg, type}), plus one readable message
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse({"detail": errors, "error": "RequestValidationError", "message": message}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error serving %s", request.url.path)
        return JSONResponse(
            {"error": "InternalError", "detail": f"the server failed on this request ({type(exc).__name__}); see the server log"},
            status_code=500,
        )

    static = static_dir()

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        target = static / name
        if "/" in name or "\\" in name or name.startswith(".") or not target.is_file():
            return JSONResponse({"error": "NotFound", "detail": f"no asset {name!r}"}, status_code=404)
        return FileResponse(target)

    app.add_middleware(Guard, token=token)
    if allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    if verify_on_start:
        app.state.verifier.start((app.state.stores.get().backend.read_head() or {}).get("digest"))
    if warm:
        from .queries import warm as warm_caches

        threading.Thread(target=warm_caches, args=(path,), name="rowtrail-warm", daemon=True).start()
    return app


def _version() -> str:
    from ..exports.documents import rowtrail_version

    return rowtrail_version()
