"""Losses order what they should; training groups never leak a judged positive in as a negative."""

from __future__ import annotations

import random

import pytest

from crossrank.errors import InputError
from crossrank.train.examples import Group, batches, judged_groups, pseudo_groups, pseudo_query
from crossrank.train.losses import distill, listwise, pairwise, pointwise, ranking_loss

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("loss", [listwise, pairwise, pointwise])
def test_each_loss_prefers_the_right_order(loss):
    labels = torch.tensor([[2.0, 1.0, 0.0, 0.0]])
    right = torch.tensor([[3.0, 1.0, -2.0, -2.0]])
    wrong = torch.tensor([[-2.0, 1.0, 3.0, 3.0]])
    assert float(loss(right, labels)) < float(loss(wrong, labels))


def test_pairwise_with_no_ordered_pair_is_zero_with_a_gradient():
    scores = torch.tensor([[0.3, -0.1]], requires_grad=True)
    out = pairwise(scores, torch.zeros(1, 2))
    out.backward()
    assert float(out.detach()) == 0.0 and scores.grad is not None


def test_distill_is_zero_at_the_teacher_and_positive_elsewhere():
    teacher = torch.tensor([[0.0, -0.69, -1.1]])
    assert float(distill(teacher.clone(), teacher)) == pytest.approx(0.0, abs=1e-7)
    assert float(distill(torch.tensor([[-1.1, -0.69, 0.0]]), teacher)) > 0.1


def test_unknown_loss_is_an_input_error():
    with pytest.raises(InputError, match="unknown loss"):
        ranking_loss("lambdamart")


def test_group_validation():
    with pytest.raises(InputError):
        Group("q", ["a", "b"], [1.0])
    with pytest.raises(InputError):
        Group("q", ["a"], [1.0])


def test_judged_groups_keep_grades_and_never_use_a_positive_as_negative():
    corpus = {f"d{i}": {"title": f"t{i}", "text": f"text {i}"} for i in range(30)}
    qrels = {"q": {"d1": 2, "d2": 1, "d3": 0}}

    def search(query, k):
        return [f"d{i}" for i in range(k if k < 30 else 30)]

    groups = judged_groups(corpus, {"q": "query", "unjudged": "x"}, qrels, search, group_size=5, depth=20)
    assert len(groups) == 2  # one per positive; unjudged queries give none
    for g in groups:
        assert g.labels[0] in (1.0, 2.0) and len(g.docs) == 5
        negatives = g.docs[1:]
        assert "t1\ntext 1" not in negatives and "t2\ntext 2" not in negatives
        assert g.teacher is not None and len(g.teacher) == 5
    assert sorted(g.labels[0] for g in groups) == [1.0, 2.0]


def test_pseudo_queries_come_from_the_document():
    rng = random.Random(0)
    doc = {"title": "Boundary layer flow", "text": "The boundary layer on a flat plate thickens downstream. More."}
    for _ in range(20):
        q = pseudo_query(doc, rng)
        assert q and all(w in (doc["title"] + " " + doc["text"]).split() for w in q.split())
    corpus = {f"d{i}": {"title": f"title words {i}", "text": " ".join(["word"] * 12) + f" tail{i}"} for i in range(20)}
    groups = pseudo_groups(corpus, lambda q, k: list(corpus)[:k], count=10, group_size=4, depth=10)
    assert len(groups) == 10 and all(g.labels == [1.0, 0.0, 0.0, 0.0] for g in groups)


def test_batches_are_deterministic_and_resume_where_they_stopped():
    groups = [Group(f"q{i}", ["a", "b"], [1.0, 0.0]) for i in range(7)]
    full = [[g.query for g in b] for b in batches(groups, 3, 10, seed=4)]
    tail = [[g.query for g in b] for b in batches(groups, 3, 10, seed=4, start=6)]
    assert full[6:] == tail and len(full) == 10 and all(len(b) == 3 for b in full)
    first_epoch = [q for b in full for q in b][:7]
    assert sorted(first_epoch) == sorted(g.query for g in groups)  # an epoch sees every group once
    other = [[g.query for g in b] for b in batches(groups, 3, 10, seed=5)]
    assert other != full
    with pytest.raises(InputError):
        list(batches([], 3, 1, seed=0))


def test_fewer_ranked_documents_than_wanted_are_all_taken_first():
    import random

    from crossrank.train.examples import _sample_negatives

    ranked = [f"r{i}" for i in range(5)]
    picked = _sample_negatives(ranked, set(), 7, random.Random(0), ranked + [f"c{i}" for i in range(100)])
    assert len(picked) == 7 and set(ranked) <= set(picked)
