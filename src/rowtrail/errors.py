"""Errors rowtrail raises. Every message says what went wrong and, where there is one, the command
that fixes it. The CLI maps them to exit codes in one place (``cli/app.py``): user errors exit 1,
verification failures exit 3.

    RowtrailError
    ├── StoreError
    │   ├── StoreNotFoundError        no store at the path
    │   ├── StoreExistsError          init over an existing store
    │   ├── StoreLockedError          another writer holds the lock
    │   └── ConflictError             the journal moved under a writer (object stores)
    ├── SourceError
    │   ├── SourceNotFoundError
    │   ├── SourceExistsError
    │   └── LicenseError              not a valid SPDX expression
    ├── IngestError                   bad input: names file, line and field
    │   └── ValueMappingError         a value with no JSON form (format 1)
    ├── RefError                      unknown version, tag or corpus
    │   └── TagExistsError
    ├── NothingToCommitError
    ├── SigningError                  no key, bad key
    ├── ProofError                    a proof that cannot be built or read
    ├── StepError                     a transformation step broke its contract
    ├── BisectError                   bisect cannot start or go on
    ├── OptOutError                   an opt-out that cannot be carried out as asked
    ├── PolicyError                   a policy that does not parse, or a version it rejects
    ├── ExportError                   an export that cannot be made as asked
    │   └── ExportExistsError         the output exists and overwriting was not asked for
    └── VerificationError             damage or an untrusted signature (exit 3)
"""

from __future__ import annotations


class RowtrailError(Exception):
    """Root of every error rowtrail raises on purpose."""

    exit_code = 1


class StoreError(RowtrailError):
    pass


class StoreNotFoundError(StoreError):
    pass


class StoreExistsError(StoreError):
    pass


class StoreLockedError(StoreError):
    pass


class ConflictError(StoreError):
    pass


class SourceError(RowtrailError):
    pass


class SourceNotFoundError(SourceError):
    pass


class SourceExistsError(SourceError):
    pass


class LicenseError(SourceError):
    pass


class IngestError(RowtrailError):
    """Bad input. ``file``, ``line`` and ``field`` say where, when known."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(where + message)
        self.reason = message


class ValueMappingError(IngestError):
    def __init__(self, message: str, file: str | None = None, line: int | None = None, field: str | None = None):
        super().__init__(message, file, line, field)


class RefError(RowtrailError):
    pass


class TagExistsError(RefError):
    pass


class NothingToCommitError(RowtrailError):
    pass


class SigningError(RowtrailError):
    pass


class ProofError(RowtrailError):
    pass


class StepError(RowtrailError):
    pass


class ExportError(RowtrailError):
    """An export that cannot be made as asked: unknown format or option, missing library."""


class ExportExistsError(ExportError):
    """The output path exists and overwriting was not asked for."""


class PolicyError(RowtrailError):
    """An admission policy that does not parse, or a commit it rejects (naming rules and sources)."""


class OptOutError(RowtrailError):
    """An opt-out that cannot be carried out as asked (nothing matches, duplicates to decide on)."""


class BisectError(RowtrailError):
    """Bisect cannot start or cannot go on (endpoints that do not test as given, an aborting test)."""


class VerificationError(RowtrailError):
    exit_code = 3
