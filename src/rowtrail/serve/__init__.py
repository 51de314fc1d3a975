"""``rowtrail serve``: a read-only HTTP API (FastAPI, schema at ``/openapi.json``) and a web explorer
of a store, for reviewers and auditors who do not use a terminal.

``create_app(store_path, token=None)`` builds the application (``app.py``); the routes are in
``api.py``, what they compute in ``queries.py``, the response models in ``models.py``, and the
explorer (HTML, CSS and vanilla JS, no CDN) in ``static/``. Importing this package does not import
FastAPI; ``create_app`` does (``pip install 'rowtrail[serve]'``).
"""

from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The FastAPI application over a store; see :func:`rowtrail.serve.app.create_app`."""
    try:
        from .app import create_app as make
    except ImportError as exc:  # pragma: no cover - depends on the install
        from ..errors import RowtrailError

        raise RowtrailError(f"rowtrail serve needs FastAPI and uvicorn ({exc.name} is missing): pip install 'rowtrail[serve]'") from None
    return make(*args, **kwargs)


__all__ = ["create_app"]
