"""Training groups: one query with a list of candidates, their labels and, for distillation, a teacher's scores.

A *group* is the unit every loss reads: listwise losses need the whole list, pairwise ones the pairs
inside it, pointwise ones each (query, candidate). Three sources make groups:

* **judgments** (`judged_groups`): each judged query of a BEIR-layout collection with its graded
  positives and hard negatives mined by crossrank's own first stage, drawn across the whole rerank
  window rather than only its top, so the model sees the mistakes it must fix at every depth;
* **pseudo-queries** (`pseudo_groups`): weak supervision from any corpus, no labels needed. A title,
  a leading sentence or a sampled span of a document becomes a query; its source document is the
  positive; the first stage's ranking of the candidates is the teacher for distillation;
* either one carries the first stage's fused ranks as ``teacher`` logits, so a distillation loss can
  keep the student where its teacher is while the labels push it further.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crossrank.errors import InputError
from crossrank.retrieval.corpus import join_fields


@dataclass
class Group:
    """One query, its candidates (texts), graded labels (0 = not relevant) and optional teacher logits."""

    query: str
    docs: list[str]
    labels: list[float]
    teacher: list[float] | None = None
    source: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if len(self.docs) != len(self.labels) or (self.teacher is not None and len(self.teacher) != len(self.docs)):
            raise InputError("a training group needs one label (and teacher score) per candidate")
        if len(self.docs) < 2:
            raise InputError("a training group needs at least two candidates")


def rank_teacher(rank: int) -> float:
    """A teacher logit from a first-stage rank (0-based): softmax gives p ∝ 1/(rank + 1).

    Rank-based rather than the raw fused score because RRF scores are nearly flat at the top and
    mean nothing across queries; 1/(rank+1) is the shape of NDCG's own discount.
    """
    return -math.log(rank + 1.0)


Searcher = Callable[[str, int], list[str]]
"""``search(query, depth) -> [doc_id, ...]`` best first: the first stage that mines and teaches."""


def first_stage_searcher(index: Any, depth: int = 100) -> Searcher:
    """crossrank's hybrid (BM25 + dense, RRF) over ``index`` as a searcher."""
    from crossrank.retrieval import build_pipeline

    pipeline = build_pipeline(index, depth=depth)

    def search(query: str, k: int) -> list[str]:
        return [hit.id for hit in pipeline(query, top_k=k, window=0).hits]

    return search


def _sample_negatives(ranked: list[str], exclude: set[str], n: int, rng: random.Random,
                      corpus_ids: list[str]) -> list[str]:
    """``n`` negatives spread over the ranking (stratified by depth), topped up at random from the corpus."""
    pool = [d for d in ranked if d not in exclude]
    picked: list[str] = []
    if pool:
        # One pick per depth stratum; fewer ranked documents than wanted: take them all.
        strata = ([pool[i * len(pool) // n:(i + 1) * len(pool) // n] for i in range(n)] if len(pool) >= n
                  else [[d] for d in pool])
        for stratum in strata:
            if stratum:
                picked.append(rng.choice(stratum))
    seen = set(picked) | exclude
    tries = 0
    while len(picked) < n and tries < 20 * n:
        d = rng.choice(corpus_ids)
        tries += 1
        if d not in seen:
            picked.append(d)
            seen.add(d)
    return picked[:n]


def judged_groups(corpus: dict[str, dict], queries: dict[str, str], qrels: dict[str, dict[str, int]],
                  search: Searcher, *, fields: Sequence[str] = ("title", "text"), group_size: int = 8,
                  depth: int = 100, seed: int = 0, source: str = "") -> list[Group]:
    """One group per (judged query, positive): the positive, ``group_size - 1`` mined negatives.

    Labels are the graded judgments; judged-relevant documents never serve as negatives. Teacher
    logits come from each candidate's rank in the first stage (unretrieved candidates rank last).
    """
    rng = random.Random(seed)
    ids = list(corpus)
    groups = []
    for qid, text in queries.items():
        judged = {d: g for d, g in qrels.get(qid, {}).items() if d in corpus}
        positives = [d for d, g in judged.items() if g > 0]
        if not positives:
            continue
        ranked = search(text, depth)
        position = {d: i for i, d in enumerate(ranked)}
        for pos in positives:
            negs = _sample_negatives(ranked, set(positives), group_size - 1, rng, ids)
            cands = [pos, *negs]
            groups.append(Group(
                text, [join_fields(corpus[d], fields) for d in cands],
                [float(judged.get(d, 0)) for d in cands],
                [rank_teacher(position.get(d, depth)) for d in cands], source=source))
    return groups


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def pseudo_query(doc: dict[str, Any], rng: random.Random, fields: Sequence[str] = ("title", "text")) -> str | None:
    """A query a user might have typed for ``doc``: its title, its first sentence or a short span of it."""
    title = str(doc.get("title") or "").strip() if "title" in fields else ""
    body = " ".join(str(doc.get(f) or "") for f in fields if f != "title").split()
    choices: list[str] = []
    if 2 <= len(title.split()) <= 20:
        choices.append(title)
    if len(body) >= 8:
        first = _SENTENCE.split(" ".join(body[:60]), maxsplit=1)[0].split()
        if 4 <= len(first) <= 30:
            choices.append(" ".join(first))
        n = rng.randint(4, 10)
        start = rng.randrange(0, max(1, len(body) - n))
        choices.append(" ".join(body[start:start + n]))
    return rng.choice(choices) if choices else None


def pseudo_groups(corpus: dict[str, dict], search: Searcher, *, count: int, fields: Sequence[str] = ("title", "text"),
                  group_size: int = 8, depth: int = 100, seed: int = 0, source: str = "",
                  progress: Callable[[int], None] | None = None) -> list[Group]:
    """``count`` weakly supervised groups from documents alone (no judgments).

    The source document is the positive (label 1); the other candidates are drawn across the first
    stage's ranking of the pseudo-query (label 0), each with the first stage's rank as teacher logit.
    """
    rng = random.Random(seed)
    ids = list(corpus)
    if not ids:
        raise InputError("pseudo-queries need a non-empty corpus")
    groups: list[Group] = []
    attempts = 0
    while len(groups) < count and attempts < 4 * count + 10:
        attempts += 1
        did = rng.choice(ids)
        query = pseudo_query(corpus[did], rng, fields)
        if not query:
            continue
        ranked = search(query, depth)
        position = {d: i for i, d in enumerate(ranked)}
        negs = _sample_negatives(ranked, {did}, group_size - 1, rng, ids)
        if len(negs) < 1:
            continue
        cands = [did, *negs]
        groups.append(Group(query, [join_fields(corpus[d], fields) for d in cands],
                            [1.0] + [0.0] * len(negs), [rank_teacher(position.get(d, depth)) for d in cands],
                            source=source))
        if progress:
            progress(1)
    return groups


def batches(groups: Sequence[Group], per_step: int, steps: int, seed: int, start: int = 0) -> Iterable[list[Group]]:
    """The groups of steps ``start .. steps-1``: epochs of seeded permutations, so step s is the same
    batch whether the run got there in one go or resumed from a checkpoint."""
    if not groups:
        raise InputError("no training groups: check the collections and the corpus")
    n = len(groups)
    perms: dict[int, list[int]] = {}

    def at(i: int) -> Group:
        epoch = i // n
        if epoch not in perms:
            perm = list(range(n))
            random.Random(seed * 1_000_003 + epoch).shuffle(perm)
            perms.clear()  # one or two epochs live at a time
            perms[epoch] = perm
        return groups[perms[epoch][i % n]]

    for step in range(start, steps):
        yield [at(i) for i in range(step * per_step, (step + 1) * per_step)]
