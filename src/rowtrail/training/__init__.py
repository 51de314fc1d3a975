"""Training dynamics: the per-step ledger of rows and gradient contributions (torch, loaded lazily).

Nothing here imports torch at import time; the recorder arrives with the training-dynamics work.
"""

from __future__ import annotations

__all__: list[str] = []
