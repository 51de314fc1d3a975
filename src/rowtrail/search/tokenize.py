"""Tokenizers for output search: named, pinned, vectorized over Arrow string arrays.

A tokenizer is identified by its config (``name``, ``pattern``, ``lowercase``), which an index records;
an index answers only queries tokenized by the same config. ``regex-v1`` (the default) splits text into
runs of letters, digits and underscores, and single other non-space characters (so ``f(x):`` is
``f``, ``(``, ``x``, ``)``, ``:``); ``whitespace-v1`` splits on whitespace only. Both run as Arrow
compute kernels (RE2) over a whole batch of rows, never a Python loop per row.

``hf-tokenizers`` is a model's own tokenizer (a ``tokenizer.json`` of the Hugging Face ``tokenizers``
library, as OLMoTrace traces in the model's token space): the file is stored in the store as an
object and pinned by its SHA-256, so an index and its queries always use the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from ..store import Store

# Every character that is not a letter, digit, underscore or space becomes a token of its own.
REGEX_V1 = r"([^\pL\pN_\s])"
SPLIT = r"\s+"
TOKENIZERS = ("regex-v1", "whitespace-v1", "hf-tokenizers")


@dataclass(frozen=True)
class Tokenizer:
    """A named, pinned tokenizer. ``lowercase`` folds case (used by the lexical index)."""

    name: str = "regex-v1"
    lowercase: bool = False
    file_sha256: str | None = None  # hf-tokenizers: the stored tokenizer.json
    hf: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.name not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {self.name!r}; choose one of {', '.join(TOKENIZERS[:2])} or a tokenizer.json file")
        if (self.name == "hf-tokenizers") != (self.hf is not None):
            raise ValueError("an hf-tokenizers tokenizer is made with Tokenizer.from_file (or from an index's config)")

    @property
    def config(self) -> dict[str, Any]:
        if self.name == "hf-tokenizers":
            return {"name": self.name, "library": "tokenizers", "file_sha256": self.file_sha256, "lowercase": self.lowercase}
        return {"name": self.name, "pattern": REGEX_V1 if self.name == "regex-v1" else None, "split": SPLIT, "lowercase": self.lowercase}

    @classmethod
    def from_file(cls, store: Store, path: str | Path, lowercase: bool = False) -> Tokenizer:
        """A model's tokenizer.json, stored in the store (pinned by its SHA-256)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read tokenizer file {path}: {exc}") from None
        return cls._hf_from_bytes(data, store.backend.put_bytes(data), lowercase, str(path))

    @classmethod
    def _hf_from_bytes(cls, data: bytes, digest: str, lowercase: bool, where: str) -> Tokenizer:
        try:
            import tokenizers
        except ImportError:
            raise ValueError("a tokenizer.json tokenizer needs the tokenizers package (pip install tokenizers)") from None
        try:
            hf = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
        except Exception as exc:  # the library raises plain Exceptions for bad files
            raise ValueError(f"{where} is not a tokenizers tokenizer.json: {exc}") from None
        return cls(name="hf-tokenizers", lowercase=lowercase, file_sha256=digest, hf=hf)

    @classmethod
    def from_config(cls, config: dict[str, Any], store: Store | None = None) -> Tokenizer:
        if config.get("name") == "hf-tokenizers":
            if store is None:
                raise ValueError("an hf-tokenizers tokenizer is loaded from the store that holds its file")
            digest = str(config.get("file_sha256"))
            tok = cls._hf_from_bytes(
                store.backend.read_bytes(digest), digest, bool(config.get("lowercase")), f"tokenizer object {digest[:12]}"
            )
        else:
            tok = cls(name=config["name"], lowercase=bool(config.get("lowercase")))
        if tok.config != config:
            raise ValueError(f"tokenizer config {config!r} is not the one this rowtrail pins for {tok.name!r} ({tok.config!r})")
        return tok

    def with_case(self, lowercase: bool) -> Tokenizer:
        return Tokenizer(self.name, lowercase, self.file_sha256, self.hf)

    def tokenize(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> tuple[pa.Array, np.ndarray]:
        """All tokens of a batch of texts, flattened, and each row's token count (nulls: none)."""
        if isinstance(texts, list):
            texts = pa.array(texts, pa.string())
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        n = len(texts)
        texts = texts.cast(pa.string()).fill_null("")
        if self.hf is not None:
            encs = self.hf.encode_batch(texts.to_pylist(), add_special_tokens=False)
            tokens = pa.array([t for e in encs for t in e.tokens], pa.string())
            counts = np.fromiter((len(e.tokens) for e in encs), dtype=np.int64, count=n)
            return (pc.utf8_lower(tokens) if self.lowercase else tokens), counts
        if self.lowercase:
            texts = pc.utf8_lower(texts)
        if self.name == "regex-v1":
            texts = pc.replace_substring_regex(texts, REGEX_V1, r" \1 ")
        parts = pc.split_pattern_regex(texts, SPLIT)
        flat = pc.list_flatten(parts)
        parent = pc.list_parent_indices(parts).to_numpy()
        keep = pc.not_equal(flat, "")  # a leading or trailing space leaves an empty piece
        tokens = flat.filter(keep)
        counts = np.bincount(parent[keep.to_numpy(zero_copy_only=False)], minlength=n).astype(np.int64)
        return tokens, counts

    def split(self, text: str) -> list[str]:
        """One text's tokens as Python strings."""
        tokens, _ = self.tokenize([text])
        return tokens.to_pylist()

    def spans(self, text: str) -> list[tuple[int, int]] | None:
        """Character offsets of a text's tokens (for showing matches as they were written), or None
        where Python's regex engine would split differently from Arrow's."""
        if self.hf is not None:
            return [tuple(o) for o in self.hf.encode(text, add_special_tokens=False).offsets]
        pattern = r"[^\W]+|[^\w\s]" if self.name == "regex-v1" else r"\S+"
        found = [(m.start(), m.end()) for m in re.finditer(pattern, text)]
        words = self.split(text)
        if len(found) != len(words) or any((text[a:b].lower() if self.lowercase else text[a:b]) != w for (a, b), w in zip(found, words)):
            return None
        return found


class Vocab:
    """Token strings to ids, grown batch by batch. Id 0 is reserved (the row separator of the span
    index), so real tokens start at 1."""

    def __init__(self, tokens: list[str] | None = None) -> None:
        self.tokens: list[str] = [""] if tokens is None else tokens
        self.ids: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def add(self, tokens: pa.Array) -> np.ndarray:
        """Ids (int32) for a flat array of tokens, adding new ones."""
        if len(tokens) == 0:
            return np.empty(0, np.int32)
        enc = pc.dictionary_encode(tokens)
        words = enc.dictionary.to_pylist()
        ids, tokens_list = self.ids, self.tokens
        mapping = np.empty(len(words), dtype=np.int32)
        for i, w in enumerate(words):
            got = ids.get(w)
            if got is None:
                got = ids[w] = len(tokens_list)
                tokens_list.append(w)
            mapping[i] = got
        return mapping[enc.indices.to_numpy(zero_copy_only=False)]

    def lookup(self, tokens: list[str]) -> np.ndarray:
        """Ids of tokens, -1 for a token the corpus never had."""
        return np.array([self.ids.get(t, -1) for t in tokens], dtype=np.int64)

    def to_arrow(self) -> pa.Array:
        return pa.array(self.tokens, pa.large_string())
