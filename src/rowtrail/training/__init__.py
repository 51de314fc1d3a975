"""Training dynamics: the per-step ledger of rows and gradient contributions (torch, loaded lazily).

``import rowtrail`` imports this package, so nothing here imports torch at import time: ``record``
loads :mod:`rowtrail.training.recorder` (and with it torch) on first use.

    with rt.training.record(store, "v1", model, optimizer) as rec:
        for ids, x, y in batches:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()        # the batch loss is the MEAN over its examples
            optimizer.step()
            rec.step(ids, loss=loss)               # after optimizer.step(), one row id per example
    store.run(rec.run_id).attribute(group="0")

See :mod:`rowtrail.training.recorder` for what is recorded and what it means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store
    from ..versions.version import Version
    from .recorder import Recorder

__all__ = ["Recorder", "dataset", "hf_trainer", "lightning_callback", "loader", "record"]

# Attribution features are recorded unless ``features=None``: 256 projected numbers per traced
# layer per example at every step, at most 512 MB of them held until the run is saved.
DEFAULT_FEATURES: Mapping[str, Any] = MappingProxyType({"dim": 256, "every": 1})


def record(
    store: Store,
    version: str | Version,
    model: Any,
    optimizer: Any,
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    corpus: str = "main",
    config: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
    features: Mapping[str, Any] | None = DEFAULT_FEATURES,
    checkpoints: int | None = None,
) -> Recorder:
    """A context manager recording a training run over corpus ``version`` (a ref or a ``Version``):
    call ``rec.step(row_ids)`` after every ``optimizer.step()``; on a normal exit the run is saved
    and ``rec.run_id`` is set. ``groups`` maps a group name to parameter or module names (default:
    one group per top-level child module with trainable parameters). ``enabled=False`` or
    ``ROWTRAIL_DISABLED=1`` makes it a no-op: no hooks, no writes. ``features`` (default
    ``dict(dim=256, every=1)``, within ``budget_mb=512``) also stores projected per-example gradients
    for test-example attribution (``store.run(rec.run_id).attribute(model=…, test_inputs=…,
    test_targets=…)``); ``features=None`` records the ledger alone."""
    Recorder = _recorder_class()
    return Recorder(store, version, model, optimizer, groups=groups, corpus=corpus, config=config, enabled=enabled, features=features, checkpoints=checkpoints)


def loader(store: Store, version: str, **kwargs: Any) -> Any:
    """A PyTorch ``DataLoader`` over a version whose batches carry their ``row_id`` s (see
    :mod:`rowtrail.training.data`)."""
    from .data import loader as make

    return make(store, version, **kwargs)


def hf_trainer(store: Store, version: str, **kwargs: Any) -> Any:
    """A (callback, data collator) pair recording a Hugging Face ``Trainer`` run (see
    :mod:`rowtrail.training.integrations`)."""
    from .integrations import hf_trainer as make

    return make(store, version, **kwargs)


def lightning_callback(store: Store, version: str, **kwargs: Any) -> Any:
    """A Lightning ``Callback`` recording a fit (see :mod:`rowtrail.training.integrations`)."""
    from .integrations import lightning_callback as make

    return make(store, version, **kwargs)


def dataset(store: Store, version: str, **kwargs: Any) -> Any:
    """A PyTorch ``Dataset`` over a version's rows, each with its ``row_id`` (see :mod:`rowtrail.training.data`)."""
    from .data import dataset as make

    return make(store, version, **kwargs)


def _recorder_class() -> type[Recorder]:
    try:
        from .recorder import Recorder
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "torch":
            raise ImportError("rt.training needs PyTorch: pip install 'rowtrail[torch]'") from exc
        raise
    return Recorder


def __getattr__(name: str) -> Any:
    if name == "Recorder":
        return _recorder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
