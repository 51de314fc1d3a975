"""Text clean-up for the demo pipeline (imported by rowtrail only from this file, named in pipeline.toml)."""

import re

_HEAD = re.compile(r"^Document \d+:\s*")
_TAIL = re.compile(r",\s*row \d+\.$")


def strip_boilerplate(text):
    """Drop the crawler's 'Document N:' header and ', row N.' footer."""
    return _TAIL.sub(".", _HEAD.sub("", text))
