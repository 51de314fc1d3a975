"""Recording runs trained by Hugging Face's ``Trainer``.

``hf_trainer(store, version)`` returns a ``TrainerCallback`` and a data collator that work together:
the collator takes each example's ``row_id`` out of the batch (so the model never sees it) and queues
the batch's ids; at every optimizer step the callback hands the ids of the micro-batches that step
consumed (``gradient_accumulation_steps`` of them, in the order they were collated — a loader that
fetches a batch ahead keeps that order) to the recorder.

    callback, collator = rt.training.hf_trainer(store, "v39")
    args = TrainingArguments(..., remove_unused_columns=False)   # keep row_id for the collator
    Trainer(model=model, args=args, train_dataset=ds, data_collator=collator, callbacks=[callback]).train()
    store.run(callback.run_id).attribute(group=...)

Each training example must carry its ``row_id`` (e.g. from ``rt.training.dataset`` or ``rowtrail
export``). ``transformers`` is imported only when this is called.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import DEFAULT_FEATURES

if TYPE_CHECKING:
    from ..store import Store


def hf_trainer(
    store: Store,
    version: str,
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    corpus: str = "main",
    config: Mapping[str, Any] | None = None,
    id_field: str = "row_id",
    collator: Callable[[list[Any]], Any] | None = None,
    features: Mapping[str, Any] | None = DEFAULT_FEATURES,
    checkpoints: int | None = None,
) -> tuple[Any, Callable[[list[Any]], Any]]:
    """A (callback, data collator) pair that records a ``Trainer`` run over ``version``."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the Trainer integration needs transformers: pip install transformers accelerate") from exc
    from . import record

    base = collator or transformers.default_data_collator
    queue: deque[list[str]] = deque()

    def collate(features: list[Any]) -> Any:
        ids = []
        stripped = []
        for f in features:
            if not isinstance(f, Mapping) or id_field not in f:
                from ..errors import RowtrailError

                raise RowtrailError(f"a training example has no '{id_field}'; give every example its row id (and TrainingArguments(remove_unused_columns=False))")
            ids.append(f[id_field])
            stripped.append({k: v for k, v in f.items() if k != id_field})
        queue.append(ids)
        return base(stripped)

    class RowtrailCallback(transformers.TrainerCallback):  # type: ignore[misc]
        """Starts the recorder with the Trainer's model and optimizer, steps it after every
        optimizer step, and saves the run when training ends (``run_id``)."""

        def __init__(self) -> None:
            self.rec: Any = None
            self.run_id: str | None = None
            self.accumulation = 1

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kwargs: Any) -> None:
            self.accumulation = max(1, int(getattr(args, "gradient_accumulation_steps", 1)))
            cfg = {"trainer": {"learning_rate": args.learning_rate, "per_device_train_batch_size": args.per_device_train_batch_size, "gradient_accumulation_steps": self.accumulation, "seed": args.seed}, **(config or {})}
            inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
            self.rec = record(store, version, model, inner, groups=groups, corpus=corpus, config=cfg, features=features, checkpoints=checkpoints)
            self.rec.__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ids: list[str] = []
            for _ in range(min(self.accumulation, len(queue))):
                ids.extend(queue.popleft())
            self.rec.step(ids)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.rec is not None:
                self.rec.__exit__(None, None, None)
                self.run_id = self.rec.run_id
                self.rec = None

    return RowtrailCallback(), collate


def lightning_callback(
    store: Store,
    version: str,
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    corpus: str = "main",
    config: Mapping[str, Any] | None = None,
    id_field: str = "row_id",
    features: Mapping[str, Any] | None = DEFAULT_FEATURES,
    checkpoints: int | None = None,
) -> Any:
    """A Lightning ``Callback`` that records the fit over ``version``: each training batch (a dict)
    carries its rows' ids under ``id_field`` (a list of 64-hex ids, e.g. from
    ``rt.training.loader``); the ids of every batch an optimizer step consumed (with
    ``accumulate_grad_batches``, several) are handed to the recorder; ``run_id`` is set when the fit
    ends."""
    try:
        import lightning.pytorch as pl
    except ImportError:  # pragma: no cover - depends on the environment
        try:
            import pytorch_lightning as pl  # type: ignore[no-redef]
        except ImportError as exc:
            raise ImportError("the Lightning integration needs lightning: pip install lightning") from exc
    from . import record

    class RowtrailLightningCallback(pl.Callback):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.rec: Any = None
            self.run_id: str | None = None
            self.pending: list[str] = []
            self.last_step = 0

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            optimizer = trainer.optimizers[0]
            cfg = {"lightning": {"accumulate_grad_batches": trainer.accumulate_grad_batches, "max_epochs": trainer.max_epochs}, **(config or {})}
            self.rec = record(store, version, pl_module, optimizer, groups=groups, corpus=corpus, config=cfg, features=features, checkpoints=checkpoints)
            self.rec.__enter__()
            self.last_step = trainer.global_step

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if not isinstance(batch, Mapping) or id_field not in batch:
                from ..errors import RowtrailError

                raise RowtrailError(f"a training batch has no '{id_field}'; give every batch its rows' ids (e.g. rt.training.loader)")
            self.pending.extend(str(r) for r in batch[id_field])
            if trainer.global_step != self.last_step:  # an optimizer step happened for these batches
                self.rec.step(self.pending)
                self.pending = []
                self.last_step = trainer.global_step

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if self.rec is not None:
                self.rec.__exit__(None, None, None)
                self.run_id = self.rec.run_id
                self.rec = None

    return RowtrailLightningCallback()
