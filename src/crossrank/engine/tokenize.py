"""Pair encoding with the Rust ``tokenizers`` library.

Rules the rest of crossrank relies on:

* only the document is truncated to ``max_length``; the query is kept whole unless it passes
  ``max_query_length`` (half the budget by default) *and* its document leaves less room than it
  needs, in which case it is cut at a token boundary to what is left (at least ``max_query_length``),
  never raising like ``only_second`` would;
* long documents can be split into overlapping windows (``max_chunks`` > 1), each one paired
  with the full query;
* huge documents are cut at a whitespace boundary before tokenization when the cut provably
  keeps every token that truncation would keep, so a 1 MB text costs what its first windows cost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from crossrank.errors import InputError, ModelLoadError

#: Characters per token assumed when pre-cutting huge documents; the cut is verified, so a
#: wrong guess costs time, never correctness.
CHARS_PER_TOKEN = 8

#: Texts tokenized per ``encode_batch`` call. A ``tokenizers`` Encoding costs ~230 bytes a token
#: (token strings, offsets, masks), the flat rows below 5: encoding a long list in slices and keeping
#: only the rows bounds the peak to one slice's Encodings (measured: 20,000 passages of ~450 tokens
#: held 2.1 GB at once before, ~0.3 GB sliced). Large enough that the Rust side stays parallel.
ENCODE_SLICE = 2048


def _starts(lengths: np.ndarray) -> np.ndarray:
    """Where each row starts in the flat token arrays, from the rows' lengths."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


@dataclass
class EncodedPairs:
    """Token rows ready for batching: one row per (pair, window)."""

    ids: np.ndarray  # flat int32, all rows concatenated (padded into int64 batches by ``collate``)
    type_ids: np.ndarray  # flat int8, same layout
    lengths: np.ndarray  # tokens per row
    offsets: np.ndarray  # start of each row in the flat arrays
    owner: np.ndarray  # pair index of each row

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_encodings(cls, rows: Sequence[Encoding], owner: Sequence[int] | None = None) -> EncodedPairs:
        """Flatten ``tokenizers`` encodings (pairs or single texts) into batchable rows."""
        lengths = np.fromiter((len(r.ids) for r in rows), dtype=np.int64, count=len(rows))
        offsets = _starts(lengths)
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(r.ids for r in rows), dtype=np.int32, count=total)
        type_ids = np.fromiter(chain.from_iterable(r.type_ids for r in rows), dtype=np.int8, count=total)
        owners = np.arange(len(rows), dtype=np.int64) if owner is None else np.asarray(owner, dtype=np.int64)
        return cls(ids, type_ids, lengths, offsets, owners)

    @classmethod
    def empty(cls) -> EncodedPairs:
        none = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int8), none, none, none)

    @classmethod
    def concat(cls, parts: Sequence[EncodedPairs], sizes: Sequence[int]) -> EncodedPairs:
        """Rows of consecutive slices as one, each slice's owners shifted past the inputs (``sizes``)
        of the slices before it."""
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        lengths = np.concatenate([p.lengths for p in parts])
        shifts = np.cumsum([0, *sizes[:-1]])
        owner = np.concatenate([p.owner + shift for p, shift in zip(parts, shifts, strict=True)])
        return cls(np.concatenate([p.ids for p in parts]), np.concatenate([p.type_ids for p in parts]),
                   lengths, _starts(lengths), owner)

    def first_windows(self) -> EncodedPairs:
        """Only each input's first row (what a one-window encoding would have made)."""
        keep = np.ones(self.rows, dtype=bool)
        keep[1:] = self.owner[1:] != self.owner[:-1]
        if keep.all():
            return self
        token_keep = np.repeat(keep, self.lengths)
        lengths = self.lengths[keep]
        return EncodedPairs(self.ids[token_keep], self.type_ids[token_keep], lengths, _starts(lengths),
                            self.owner[keep])

    @classmethod
    def from_windows(cls, encodings: Sequence[Encoding], max_windows: int) -> EncodedPairs:
        """Each encoding plus up to ``max_windows - 1`` of its overflowing windows, owned by its input."""
        rows: list[Encoding] = []
        owner: list[int] = []
        for i, enc in enumerate(encodings):
            windows = (enc, *enc.overflowing[: max_windows - 1]) if max_windows > 1 else (enc,)
            rows.extend(windows)
            owner.extend([i] * len(windows))
        return cls.from_encodings(rows, owner)


def encode_sliced(items: Sequence[Any], encode: Callable[[Sequence[Any]], EncodedPairs],
                  size: int | None = None) -> EncodedPairs:
    """``encode`` applied to consecutive slices of ``items`` (:data:`ENCODE_SLICE` each unless
    ``size``), joined: the memory of one slice's Encodings at a time, the same rows as one call."""
    size = size or ENCODE_SLICE
    slices = [items[i:i + size] for i in range(0, len(items), size)]
    return EncodedPairs.concat([encode(s) for s in slices], [len(s) for s in slices])


def pad_token_id(tokenizer: Tokenizer) -> int:
    """The checkpoint's padding id (BERT ``[PAD]``, XLM-R ``<pad>``...), 0 when it names none."""
    return next(
        (i for t in ("[PAD]", "<pad>", "<|endoftext|>") if (i := tokenizer.token_to_id(t)) is not None), 0
    )


class PairTokenizer:
    """Encodes (query, document) pairs the way the checkpoint's own tokenizer does."""

    def __init__(self, tokenizer_file: Path, max_length: int, max_query_length: int | None = None,
                 model_name: str = "") -> None:
        try:
            self._tok = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # noqa: BLE001 - the Rust error types are not exported
            raise ModelLoadError(model_name or str(tokenizer_file), f"cannot read {tokenizer_file}: {exc}") from exc
        self._tok.no_padding()
        self._tok.no_truncation()
        # Truncation is tokenizer state: one instance per stride, configured once, so concurrent
        # callers (the server's threads) never see each other's settings.
        self._json = self._tok.to_str()
        self._pair_tokenizers: dict[int, Tokenizer] = {}
        self._lock = threading.Lock()
        self.specials = self._tok.num_special_tokens_to_add(True)
        if max_length <= self.specials + 2:
            raise InputError(f"max_length={max_length} leaves no room for the texts "
                             f"({self.specials} special tokens, at least one token each for query and document)")
        self.max_length = int(max_length)
        budget = self.max_length - self.specials
        self.max_query_length = max(1, min(max_query_length or budget // 2, budget - 1))
        self.pad_id = pad_token_id(self._tok)

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tok

    def _pair_tokenizer(self, stride: int) -> Tokenizer:
        tok = self._pair_tokenizers.get(stride)
        if tok is None:
            with self._lock:
                tok = Tokenizer.from_str(self._json)
                tok.enable_truncation(self.max_length, stride=stride, strategy="only_second")
                self._pair_tokenizers[stride] = tok
        return tok

    def _truncate_queries(self, queries: list[str], docs: list[str]) -> tuple[list[str], int]:
        """Each pair's query, cut only as far as its document needs: a query longer than half the budget
        keeps what the document leaves free (all of it, or at least half). As sentence-transformers'
        longest-first truncation does, to within a token, where that would keep the query; never more
        than the document cannot be cut for (the document's truncation is the only one asked for)."""
        unique = list(dict.fromkeys(queries))
        encoded = dict(zip(unique, self._tok.encode_batch(unique, add_special_tokens=False), strict=False))
        for q, enc in encoded.items():
            if not enc.ids:  # e.g. only zero-width or control characters: it would score as no query at all
                raise InputError(f"the query {q[:40]!r} holds no token this model reads")
        long = [i for i, q in enumerate(queries) if len(encoded[q].ids) > self.max_query_length]
        if not long:
            return queries, 0
        budget = self.max_length - self.specials
        heads = self._precut([docs[i] for i in long], budget)  # only whether a document is short matters
        lengths = [len(e.ids) for e in self._tok.encode_batch(heads, add_special_tokens=False)]
        keeps: dict[int, int] = {}
        for i, doc_tokens in zip(long, lengths, strict=True):
            n = len(encoded[queries[i]].ids)
            keep = min(n, max(self.max_query_length, budget - doc_tokens))
            if keep < n:
                keeps[i] = keep
        cuts = self._cut_all({(queries[i], keep) for i, keep in keeps.items()}, encoded)
        out = list(queries)
        over = 0  # tokens of a query left longer than its room (its first character is worth more than that)
        for i, keep in keeps.items():
            out[i], tokens = cuts[(queries[i], keep)]
            if tokens > keep:  # only the last resort of _cut_all: the stride must leave room for it
                over = max(over, tokens)
        return out, over

    def _cut_all(self, wanted: set[tuple[str, int]], encoded: dict[str, Encoding]
                 ) -> dict[tuple[str, int], tuple[str, int]]:
        """For each (query, keep): the longest prefix of the query that encodes to at most ``keep`` tokens, and
        its token count. Cut at a token's end, but byte-level BPE gives one character (an emoji, most CJK)
        several tokens that share its offsets, and a cut inside it keeps them all: each prefix is
        re-encoded (all at once, in Rust's threads) and shortened until it fits, so the query never takes a
        token the document was promised (a tokenizer error, or a stride panic, when it did). A first
        character worth more than ``keep`` tokens is kept whole."""
        offsets = {q: encoded[q].offsets for q in {q for q, _ in wanted}}  # each .offsets builds a new list
        ends: dict[tuple[str, int], int] = {}
        for q, keep in wanted:
            k = keep
            while k > 1 and k < len(offsets[q]) and offsets[q][k][0] < offsets[q][k - 1][1]:
                k -= 1  # inside a character that continues in the next token
            ends[(q, keep)] = k
        done: dict[tuple[str, int], tuple[str, int]] = {}
        while ends:
            keys = list(ends)
            prefixes = [q[: offsets[q][ends[(q, keep)] - 1][1]] for q, keep in keys]
            for (q, keep), prefix, enc in zip(keys, prefixes, self._tok.encode_batch(
                    prefixes, add_special_tokens=False), strict=True):
                k = ends.pop((q, keep))
                if len(enc.ids) <= keep or k <= 1:
                    done[(q, keep)] = (prefix, len(enc.ids))
                else:  # still too long (a merge the cut undid): one token shorter, past any shared character
                    k -= 1
                    while k > 1 and offsets[q][k][0] < offsets[q][k - 1][1]:
                        k -= 1
                    ends[(q, keep)] = k
        return done

    def _precut(self, docs: list[str], max_tokens: int, *, keep_end: bool = False) -> list[str]:
        """Cut huge documents at whitespace when the prefix (or, with ``keep_end``, the suffix) still
        holds every token we need."""
        cap = max_tokens * CHARS_PER_TOKEN
        candidates = [i for i, d in enumerate(docs) if len(d) > cap]
        if not candidates:
            return docs
        docs = list(docs)
        cuts: dict[int, str] = {}
        for i in candidates:
            d = docs[i]
            if keep_end:  # the space stays: byte-level BPE reads it as part of the next word
                start = len(d) - cap
                cut = min((c for c in (d.find(" ", start), d.find("\n", start)) if c >= 0), default=-1)
                if cut > 0:
                    cuts[i] = d[cut:]
                continue
            cut = max(d.rfind(" ", 0, cap), d.rfind("\n", 0, cap))
            if cut > 0:
                cuts[i] = d[:cut]
        if cuts:
            keys = list(cuts)
            encs = self._tok.encode_batch([cuts[i] for i in keys], add_special_tokens=False)
            for i, enc in zip(keys, encs, strict=False):
                # The cut part must cover everything truncation keeps. A suffix's first word may split
                # differently than in the whole text (merges across the cut): it does not count.
                first = sum(w == enc.word_ids[0] for w in enc.word_ids) if keep_end and enc.ids else 0
                if len(enc.ids) - first > max_tokens:
                    docs[i] = cuts[i]
        return docs

    def encode(self, queries: list[str], docs: list[str], *, max_chunks: int = 1,
               overlap: int = 0, truncation_side: str = "right") -> EncodedPairs:
        """Encode pairs; with ``max_chunks`` > 1 a long document yields up to that many windows (read from
        its start). ``truncation_side="left"`` keeps a long document's end instead of its start (TEI's
        ``truncation_direction: Left``), in one window."""
        if truncation_side not in ("right", "left"):
            raise InputError(f"truncation_side must be 'right' or 'left', got {truncation_side!r}")
        if truncation_side == "left" and max_chunks > 1:
            raise InputError("truncation_side='left' keeps one window, a document's end: max_chunks_per_doc must be 1")
        if not queries:
            return EncodedPairs.empty()
        queries, over = self._truncate_queries(queries, docs)
        pairs = list(zip(queries, docs, strict=True))
        if truncation_side == "left":
            return encode_sliced(pairs, self._encode_keeping_ends)
        window = self.max_length - self.specials - max(self.max_query_length, over)
        stride = max(0, min(overlap, window - 1)) if max_chunks > 1 else 0
        tok = self._pair_tokenizer(stride)

        def encode_slice(part: Sequence[tuple[str, str]]) -> EncodedPairs:
            cut = self._precut([d for _, d in part], self.max_length * max(1, max_chunks) + 1)
            encodings = tok.encode_batch([(q, d) for (q, _), d in zip(part, cut, strict=True)])
            return EncodedPairs.from_windows(encodings, max_chunks)

        return encode_sliced(pairs, encode_slice)

    def _encode_keeping_ends(self, pairs: Sequence[tuple[str, str]]) -> EncodedPairs:
        """Pairs whose documents lose tokens from the left: query and document encoded apart, the
        document cut to what the window leaves after the query, then the checkpoint's own special
        tokens and segment ids added by its post-processor (exactly what right truncation produces,
        but from the other end)."""
        queries = [q for q, _ in pairs]
        docs = self._precut([d for _, d in pairs], self.max_length + 1, keep_end=True)
        q_encs = self._tok.encode_batch(queries, add_special_tokens=False)
        d_encs = self._tok.encode_batch(docs, add_special_tokens=False)
        rows = []
        for q, d in zip(q_encs, d_encs, strict=True):
            room = max(0, self.max_length - self.specials - len(q.ids))
            if len(d.ids) > room:
                d.truncate(room, direction="left")
            rows.append(self._tok.post_process(q, d, add_special_tokens=True))
        return EncodedPairs.from_encodings(rows)
