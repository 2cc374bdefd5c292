"""The scoring engine: models, tokenization, batching and backends. Imports no other layer."""

from crossrank.engine.encoder import CrossEncoder, RankedDocument, ScoreStats

__all__ = ["CrossEncoder", "RankedDocument", "ScoreStats"]
