"""``rowtrail serve``: the read-only HTTP API and web explorer of a store (see ``rowtrail.serve``).

Binds to 127.0.0.1 by default. Any other host needs ``--token`` (or ``ROWTRAIL_SERVE_TOKEN``) or an
explicit ``--no-auth``, so a store is never exposed to a network by accident.
"""

from __future__ import annotations

import ipaddress

import typer

from . import render

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    port: int = typer.Option(8765, "--port", "-p", min=0, max=65535, help="TCP port (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Anything but loopback needs --token or --no-auth."),
    token: str | None = typer.Option(
        None, "--token", envvar="ROWTRAIL_SERVE_TOKEN", help="Require this bearer token (the browser: open /?token=T once)."
    ),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Serve a non-loopback host without a token (anyone who reaches it can read the store)."
    ),
    verify_sample: int = typer.Option(
        1000, "--verify-sample", min=0, help="Rows recomputed per version by the background verify (0: every row)."
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve a read-only explorer of the store in the browser, and its HTTP API (/openapi.json)."""
    from ..errors import RowtrailError
    from .app import _STORE

    if token is not None and no_auth:
        raise typer.BadParameter("give --token or --no-auth, not both")
    if token is not None and len(token) < 16:
        raise RowtrailError(
            "--token must be at least 16 characters; make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    loopback = is_loopback(host)
    if not loopback and token is None and not no_auth:
        raise RowtrailError(
            f"--host {host} would expose the store beyond this machine; give --token T (bearer token) or, to serve without one, --no-auth"
        )
    try:
        import uvicorn

        from ..serve import create_app
    except ImportError as exc:
        raise RowtrailError(f"rowtrail serve needs FastAPI and uvicorn ({exc.name} is missing): pip install 'rowtrail[serve]'") from None
    # a loopback server without a token answers only loopback Host headers (DNS rebinding)
    allowed = ["127.0.0.1", "localhost"] if loopback and token is None and ":" not in host else None
    app = create_app(_STORE["path"], token=token, verify_sample=verify_sample or None, allowed_hosts=allowed)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, server_header=False, date_header=False)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host

    original = server.startup

    async def startup(sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await original(sockets)
        bound = port
        for srv in getattr(server, "servers", []):
            for sock in srv.sockets:
                bound = sock.getsockname()[1]
        where = f"http://{shown}:{bound}/"
        render.err.print(
            f"rowtrail explorer of {app.state.stores.path} at {where}" + (" (open /?token=… once in the browser)" if token else ""),
            markup=False,
            highlight=False,
        )
        print(f"serving {where}", flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``rowtrail`` app."""
    app.command("serve")(serve)
