"""Ranking losses over groups: ``scores`` and ``labels`` are (groups, candidates) tensors.

Listwise and pairwise losses compare candidates of the same query, which is what a reranker is
judged on; pointwise BCE is kept as the baseline the probes on this data showed to be weakest.
``distill`` is the listwise KL from a teacher's distribution, the term that keeps a student near
its first stage while the labels move it.
"""

from __future__ import annotations

from typing import Any

LOSSES = ("listwise", "pairwise", "pointwise")


def listwise(scores: Any, labels: Any) -> Any:
    """ListNet: cross-entropy between softmax(scores) and the labels' distribution (graded gains kept)."""
    import torch

    gains = labels.clamp(min=0)
    target = gains / gains.sum(dim=1, keepdim=True).clamp(min=1e-9)
    return -(target * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()


def pairwise(scores: Any, labels: Any) -> Any:
    """RankNet: logistic loss on every pair whose labels differ, weighted by the gain difference."""
    import torch

    diff = scores.unsqueeze(2) - scores.unsqueeze(1)
    gain = labels.unsqueeze(2) - labels.unsqueeze(1)
    mask = gain > 0
    if not bool(mask.any()):
        return scores.sum() * 0.0
    return (torch.nn.functional.softplus(-diff[mask]) * gain[mask]).sum() / gain[mask].sum()


def pointwise(scores: Any, labels: Any) -> Any:
    """Binary cross-entropy with any positive grade as relevant."""
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(scores, (labels > 0).to(scores.dtype))


def distill(scores: Any, teacher: Any, temperature: float = 1.0) -> Any:
    """KL(teacher || student) over each group's candidates, both as softmax distributions."""
    import torch

    t = torch.softmax(teacher / temperature, dim=1)
    return torch.nn.functional.kl_div(torch.log_softmax(scores / temperature, dim=1), t,
                                      reduction="batchmean") * temperature**2


def ranking_loss(name: str) -> Any:
    """The loss function called ``name``."""
    from crossrank.errors import InputError

    table = {"listwise": listwise, "pairwise": pairwise, "pointwise": pointwise}
    if name not in table:
        raise InputError(f"unknown loss {name!r}; expected one of {LOSSES}")
    return table[name]
