"""An ingest worker process: reads ``{"spec": …, "parts": [[index, part], …]}`` as JSON on stdin and
writes one JSON ``PartResult`` line per part on stdout (see ``ops/ingest.py``, "Parallel execution")."""

from __future__ import annotations

import dataclasses
import sys

import orjson

from ..readers import Part
from .ingest import process_part, spec_from_dict


def main() -> None:
    job = orjson.loads(sys.stdin.buffer.read())
    spec = spec_from_dict(job["spec"])
    for index, part in job["parts"]:
        res = process_part(spec, Part(**part), index)
        sys.stdout.buffer.write(orjson.dumps(dataclasses.asdict(res)) + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
