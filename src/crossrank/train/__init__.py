"""Fine-tuning cross-encoders: training groups, ranking losses, a seeded resumable trainer, recipes.

Needs the ``[train]`` extra (PyTorch, transformers). The engine never imports this package.
"""

from crossrank.train.examples import Group, judged_groups, pseudo_groups, pseudo_query
from crossrank.train.trainer import TrainConfig, TrainResult, train

__all__ = ["Group", "TrainConfig", "TrainResult", "judged_groups", "pseudo_groups", "pseudo_query", "train"]
