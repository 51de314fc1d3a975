"""A writer lock for object stores whose server ignores conditional writes: one lock object holding an
owner, a lease and a fencing token (docs/scale.md "Servers without conditional writes").

On a server that honours ``If-None-Match: *`` rowtrail needs no lock (the conditional put of journal
entry N+1 is the fence, checked by the server). Where the server ignores the header, nothing on the
server can refuse a second writer's put, so writers must agree not to race. They do it through
``<store>/locks/journal.json``::

    {"holder": "host pid 123", "lease_seconds": 30.0, "owner": "<uuid4 of this acquisition>",
     "released": false, "renewal": 4, "token": 17, "written_at": "2026-…Z"}

**Acquiring** (Fischer's timed mutual exclusion over read and write): read the lock; it is free when
absent, marked ``released``, or unchanged (byte for byte) for a whole ``lease_seconds`` as timed by the
*reader's* monotonic clock from when it first saw those bytes (so no two machines' wall clocks are
compared); then write a claim with ``token`` one more than the record read, wait ``settle`` seconds, and
read the lock back: it is held when the read-back still shows the claim's bytes, else another claim
landed later and won (this writer goes back to waiting). **Holding**: a thread renews the lease (a new
``renewal`` count, same token) every third of a lease; the holder counts its lease from the moment it
*sent* its last successful write, which no waiter can see before it was sent. **Fencing**: before each
journal put the holder reads the lock and refuses (``ConflictError``) unless it still holds its own
bytes with at least ``settle`` seconds of lease left; a holder whose lease lapsed (a paused process)
never writes. **Release** marks the record ``released`` (keeping the token, so tokens only grow); a
crashed holder's lease simply runs out.

What this guarantees, precisely: at most one writer holds the lock, and only the holder publishes
journal entries, *provided* (1) every claim write lands within ``settle`` seconds of the read that
found the lock free, and every journal put within ``settle`` seconds of the fencing read before it (no
process pause, GC stall or request slower than ``settle`` in those windows); (2) the server is strongly
consistent (a read returns the last completed write, as S3 is since 2020); (3) the machines' monotonic
clocks run at about the same rate (no wall-clock sync is assumed). A writer that breaks (1), e.g. a
process stopped between its fencing read and its put for longer than ``settle``, can still overwrite an
entry: plain S3 cannot check a fencing token on a put, so the token narrows the window to one request
and records who held the lock, but it cannot close it. The conditional put closes it; use a server
that has one where the timing assumption is not acceptable.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ConflictError, StoreError, StoreLockedError

LOCK_KEY = "locks/journal.json"
DEFAULT_LEASE = 30.0  # seconds a holder's claim lasts without renewal
DEFAULT_SETTLE = 1.0  # seconds between a claim and its read-back; the bound on one request's latency


@dataclass(frozen=True)
class LeaseSettings:
    """How long a lease lasts and how long a claim settles (both in seconds)."""

    lease: float = DEFAULT_LEASE
    settle: float = DEFAULT_SETTLE

    def __post_init__(self) -> None:
        if not (self.lease > 0 and self.settle > 0 and self.lease > 4 * self.settle):
            raise StoreError(
                f"a lease of {self.lease:g} s with a settle time of {self.settle:g} s: the lease must be positive and "
                "longer than four settle times (ROWTRAIL_S3_LEASE, ROWTRAIL_S3_LEASE_SETTLE)"
            )


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def describe(record: bytes | None) -> str:
    """Who a lock record names, for messages."""
    if record is None:
        return "nobody"
    try:
        rec = orjson.loads(record)
        return f"{rec.get('holder', '?')} (token {rec.get('token', '?')})"
    except orjson.JSONDecodeError:
        return "an unreadable record"


class LeaseLock:
    """One acquisition of the store's lock object, renewed in the background until released.

    ``read()`` returns the lock object's bytes (None when absent) and ``write(data)`` replaces them; the
    backend binds both to the store's ``locks/journal.json``. ``clock`` and ``sleep`` are injectable
    (monotonic seconds)."""

    def __init__(
        self,
        read: Callable[[], bytes | None],
        write: Callable[[bytes], None],
        where: str,
        settings: LeaseSettings,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._read, self._write_raw, self.where = read, write, where
        self.lease, self.settle = settings.lease, settings.settle
        self._clock, self._sleep = clock, sleep
        self._mu = threading.Lock()  # one lock-object operation of this holder at a time
        self._mine: bytes | None = None  # the record this holder last wrote, while it holds the lock
        self._rec: dict[str, Any] = {}
        self._valid_until = 0.0  # clock() at which the lease ends: sent time of the last good write + lease
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def token(self) -> int | None:
        """The fencing token of this acquisition (None until acquired)."""
        return self._rec.get("token") if self._mine is not None else None

    # -- records -----------------------------------------------------------------------------------
    def _record(self, **fields: Any) -> bytes:
        return orjson.dumps(
            {
                "holder": f"{socket.gethostname()} pid {os.getpid()}",
                "lease_seconds": self.lease,
                "written_at": _now_rfc3339(),
                **fields,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    def _parse(self, data: bytes) -> dict[str, Any]:
        try:
            rec = orjson.loads(data)
        except orjson.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict) or not isinstance(rec.get("token"), int) or not isinstance(rec.get("lease_seconds"), (int, float)):
            raise StoreError(
                f"the lock object {self.where} is damaged ({data[:80]!r}); make sure no writer runs, then delete it "
                "(its fencing token restarts at 1)"
            )
        return rec

    # -- acquire -----------------------------------------------------------------------------------
    def acquire(self, wait: float) -> None:
        """Take the lock, waiting up to ``wait`` seconds for a live holder (and always long enough
        for a dead holder's lease to run out); StoreLockedError when a live holder keeps it."""
        start = self._clock()
        seen: bytes | None = None
        seen_at = start
        waited_for_lease = 0.0
        while True:
            data = self._read()
            now = self._clock()
            if data is None or data != seen:
                seen, seen_at = data, now
            rec = self._parse(data) if data is not None else None
            lease = float(rec["lease_seconds"]) if rec else 0.0
            waited_for_lease = max(waited_for_lease, lease)
            if rec is None or rec.get("released") or now - seen_at >= lease:
                token = (rec["token"] if rec else 0) + 1
                claim = self._record(owner=uuid.uuid4().hex, token=token, renewal=0, released=False)
                sent = self._clock()
                self._write_raw(claim)
                self._sleep(self.settle)
                back = self._read()
                if back == claim:
                    with self._mu:
                        self._mine, self._rec, self._valid_until, self._lost = claim, orjson.loads(claim), sent + self.lease, None
                    self._stop.clear()
                    self._renewer = threading.Thread(target=self._renew_loop, name="rowtrail-lease", daemon=True)
                    self._renewer.start()
                    return
                seen, seen_at = back, self._clock()  # a later claim won: wait for its holder
                continue
            # a live or dead holder: wait at least one of its leases (a dead one's then runs out)
            limit = max(wait, waited_for_lease + 2 * self.settle)
            if now - start >= limit:
                left = lease - (now - seen_at)
                raise StoreLockedError(
                    f"the store at {self.where.rsplit('/', 2)[0]} is locked by another writer, {describe(data)}, which keeps "
                    f"renewing its lease (waited {now - start:.1f} s; a lease that is not renewed runs out within {left:.1f} s); "
                    "retry when it finishes, or raise ROWTRAIL_LOCK_TIMEOUT"
                )
            self._sleep(max(0.05, min(self.lease / 10, 1.0)))

    # -- hold --------------------------------------------------------------------------------------
    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                with self._mu:
                    self._renew()
            except Exception:  # noqa: BLE001 - a failed renewal only shortens the lease; check() reports it
                continue
            if self._lost:
                return

    def _renew(self) -> None:
        """Extend the lease (called with ``_mu`` held); mark it lost when it lapsed or was taken."""
        if self._mine is None or self._lost:
            return
        if self._clock() + self.settle >= self._valid_until:
            lapsed = self._clock() - (self._valid_until - self.lease)
            self._lost = f"its lease lapsed ({lapsed:.1f} s since it was last renewed, of a {self.lease:g} s lease: the process was paused or requests were slow)"
            return
        current = self._read()
        if current != self._mine:
            self._lost = f"{describe(current)} took the lock over"
            return
        record = self._record(owner=self._rec["owner"], token=self._rec["token"], renewal=self._rec["renewal"] + 1, released=False)
        sent = self._clock()
        self._write_raw(record)
        self._mine, self._rec, self._valid_until = record, orjson.loads(record), sent + self.lease

    def check(self) -> int:
        """Before a journal put: this writer still holds the lock with at least ``settle`` seconds of
        lease left (renewed first when less than two are left). Returns the fencing token; raises
        ConflictError when the lock was lost, and nothing may be written."""
        with self._mu:
            if self._mine is not None and not self._lost and self._clock() + 2 * self.settle >= self._valid_until:
                self._renew()
            if self._mine is not None and not self._lost:
                current = self._read()
                if current != self._mine:
                    self._lost = f"{describe(current)} took the lock over"
                elif self._clock() + self.settle >= self._valid_until:
                    self._lost = "its lease ran out while it checked it (requests slower than the settle time)"
            if self._mine is None or self._lost:
                raise ConflictError(
                    f"this writer lost its lock on {self.where}: {self._lost or 'it was never taken'} "
                    f"(this writer held token {self._rec.get('token', '?')}), so nothing of this write was committed "
                    "(staged work already in the store is untouched). Run the command again: it starts from the new tip "
                    "and reuses the objects already uploaded (see 'rowtrail status' / 'rowtrail log')"
                )
            return int(self._rec["token"])

    def release(self) -> None:
        """Mark the record released (keeping its token) if this writer still holds it; else leave it
        to whoever holds it now, or to run out."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=max(1.0, 2 * self.settle))
        with self._mu:
            try:
                if self._mine is not None and not self._lost and self._clock() + self.settle < self._valid_until:
                    if self._read() == self._mine:
                        rec = self._rec
                        self._write_raw(self._record(owner=rec["owner"], token=rec["token"], renewal=rec["renewal"], released=True))
            finally:
                self._mine = None
