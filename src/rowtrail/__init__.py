"""rowtrail: a paper trail for every ML training row.

Sources and rows with provenance, versioned lineage, signed hash-chained corpus versions, diffs,
traces and Merkle proofs. ``import rowtrail`` never imports torch, ray or object-store backends.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import steps, training
from .errors import (
    BisectError,
    ConflictError,
    ExportError,
    ExportExistsError,
    IngestError,
    LicenseError,
    NothingToCommitError,
    OptOutError,
    PolicyError,
    ProofError,
    RefError,
    RowtrailError,
    SigningError,
    SourceError,
    SourceExistsError,
    SourceNotFoundError,
    StepError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
    TagExistsError,
    ValueMappingError,
    VerificationError,
)
from .hashing import verify_exclusion, verify_inclusion
from .ops.diff import ProvenanceDiff, ProvenanceSet
from .store import Store, init, open
from .versions.signing import keygen
from .versions.version import Version

__all__ = [
    "BisectError",
    "ConflictError",
    "ExportError",
    "ExportExistsError",
    "IngestError",
    "LicenseError",
    "NothingToCommitError",
    "OptOutError",
    "PolicyError",
    "ProofError",
    "ProvenanceDiff",
    "ProvenanceSet",
    "RefError",
    "RowtrailError",
    "SigningError",
    "SourceError",
    "SourceExistsError",
    "SourceNotFoundError",
    "StepError",
    "Store",
    "StoreError",
    "StoreExistsError",
    "StoreLockedError",
    "StoreNotFoundError",
    "TagExistsError",
    "ValueMappingError",
    "VerificationError",
    "Version",
    "__version__",
    "init",
    "keygen",
    "open",
    "steps",
    "training",
    "verify_exclusion",
    "verify_inclusion",
]
