"""Commands of the feedback area; ``register(app)`` adds them to the ``rowtrail`` app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to *app* (none yet)."""
