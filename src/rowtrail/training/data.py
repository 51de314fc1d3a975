"""Training data straight from a version: a PyTorch dataset and loader whose batches carry their
rows' ids, so ``rec.step(batch.row_ids)`` names exactly the rows the step consumed.

    loader = rt.training.loader(store, "v39", fields=["prompt", "response"], batch_size=32, shuffle=0)
    for batch in loader:
        ...  # batch["row_id"]: list of 64-hex ids; batch["prompt"], batch["response"]: lists
        rec.step(batch["row_id"])

Rows are read once with ``store.rows`` (content fields, provenance columns and ``weight``). Shuffling
is a seeded permutation (the same order for the same seed); ``weighted=True`` draws rows with
probability proportional to their version weight (``WeightedRandomSampler``), so an upsampled row is
seen more often instead of being copied. A ``transform`` turns a row dict into model inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Store


def dataset(store: Store, version: str, *, fields: Sequence[str] | None = None, source: str | None = None, corpus: str = "main", transform: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """A map-style ``torch.utils.data.Dataset`` over a version's rows: item i is
    ``{"row_id": …, "weight": …, <fields>…}`` (or ``transform`` of it, with ``row_id`` kept)."""
    import torch.utils.data

    from ..errors import RowtrailError

    table = store.rows(version, source=source, corpus=corpus)
    names = list(fields) if fields is not None else [c for c in table.column_names if c not in ("weight",)]
    missing = [f for f in names if f not in table.column_names]
    if missing:
        raise RowtrailError(f"version {version} has no field(s) {', '.join(missing)}; its columns: {', '.join(table.column_names)}")
    columns = {n: table.column(n).to_pylist() for n in dict.fromkeys(["row_id", "weight", *names])}

    class RowDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
        weights = columns["weight"]

        def __len__(self) -> int:
            return len(columns["row_id"])

        def __getitem__(self, i: int) -> Any:
            row = {n: col[i] for n, col in columns.items()}
            if transform is None:
                return row
            out = transform(row)
            return (row["row_id"], out)

    return RowDataset()


def _collate(items: list[Any]) -> Any:
    if items and isinstance(items[0], tuple):  # (row_id, transformed)
        import torch.utils.data

        return {"row_id": [i[0] for i in items], "inputs": torch.utils.data.default_collate([i[1] for i in items])}
    return {k: [it[k] for it in items] for k in items[0]} if items else {}


def loader(
    store: Store,
    version: str,
    *,
    fields: Sequence[str] | None = None,
    batch_size: int = 32,
    shuffle: int | None = None,
    weighted: bool = False,
    num_samples: int | None = None,
    source: str | None = None,
    corpus: str = "main",
    transform: Callable[[dict[str, Any]], Any] | None = None,
    drop_last: bool = False,
) -> Any:
    """A ``torch.utils.data.DataLoader`` over a version whose batches hold ``row_id`` (a list of
    64-hex ids) next to the fields — or, with ``transform``, ``{"row_id": [...], "inputs": collated}``.
    ``shuffle`` is a seed (None: id order); ``weighted`` samples by version weight."""
    import torch
    import torch.utils.data

    ds = dataset(store, version, fields=fields, source=source, corpus=corpus, transform=transform)
    generator = torch.Generator().manual_seed(int(shuffle)) if shuffle is not None else None
    sampler: Any = None
    if weighted:
        sampler = torch.utils.data.WeightedRandomSampler(ds.weights, num_samples=num_samples or len(ds), replacement=True, generator=generator)
    elif shuffle is not None:
        sampler = torch.utils.data.RandomSampler(ds, generator=generator)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=_collate, drop_last=drop_last)
