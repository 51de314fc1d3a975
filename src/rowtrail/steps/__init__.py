"""Transformation steps: ``from rowtrail import steps``.

``steps.filter``, ``score``, ``reweight``, ``upsample``, ``sample``, ``mix``, ``dedupe_exact``,
``dedupe_near`` and ``rewrite`` build pinned ``Step`` objects (the contract is in ``base.py``);
``store.apply([...])`` sets them as a corpus's pipeline, and ``load_pipeline("pipeline.toml")`` reads
the same list from a pipeline file. User functions are imported only from the user's own pipeline
file or code, never from anything stored.
"""

from __future__ import annotations

from .base import Changes, Step, StepOutput
from .builtin import DedupeExact, DedupeNear, Filter, Mix, Reweight, Rewrite, Sample, Score, Upsample
from .pipeline import Pipeline, from_definition, load_pipeline

filter = Filter  # noqa: A001 - the design's public name
score = Score
reweight = Reweight
upsample = Upsample
sample = Sample
mix = Mix
dedupe_exact = DedupeExact
dedupe_near = DedupeNear
rewrite = Rewrite

__all__ = [
    "Changes",
    "Pipeline",
    "Step",
    "StepOutput",
    "dedupe_exact",
    "dedupe_near",
    "filter",
    "from_definition",
    "load_pipeline",
    "mix",
    "reweight",
    "rewrite",
    "sample",
    "score",
    "upsample",
]
