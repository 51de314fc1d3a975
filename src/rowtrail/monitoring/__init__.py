"""Monitoring: figures that say how a transformation step changed the rows it passed on.

``drift`` compares a column's distribution before and after a step (weighted, since steps may
reweight rows): PSI, KL and KS for numeric columns, share changes, PSI and KL for categorical ones,
warn/fail thresholds over those figures, and a PNG summary of a pipeline's per-step reports.
"""

from __future__ import annotations

from .drift import categorical_drift, check, kl_divergence, numeric_drift, plot, psi

__all__ = ["categorical_drift", "check", "kl_divergence", "numeric_drift", "plot", "psi"]
