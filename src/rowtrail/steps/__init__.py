"""Transformation steps (filter, dedupe, reweight, upsample, sample, rewrite, score).

The Step contract: Arrow record batches in, record batches out, plus lineage edges, drops with
reasons and weight changes; every parent is accounted for. The built-in steps arrive with the
lineage work; until then a corpus's pipeline is empty and a version is its input set.
"""

from __future__ import annotations

__all__: list[str] = []
