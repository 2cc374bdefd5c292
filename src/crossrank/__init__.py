"""crossrank: cross-encoder reranking, exact and fast.

>>> from crossrank import CrossEncoder
>>> ce = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")
>>> ce.rank("crocs", ["Crocs Kids' Baya Clog", "running shoes"], top_k=1)
"""

from crossrank.engine import CrossEncoder, RankedDocument, ScoreStats
from crossrank.errors import (
    BackendError,
    CrossrankError,
    InputError,
    MissingDependencyError,
    ModelLoadError,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CrossEncoder",
    "CrossrankError",
    "InputError",
    "MissingDependencyError",
    "ModelLoadError",
    "RankedDocument",
    "ScoreStats",
    "__version__",
]
