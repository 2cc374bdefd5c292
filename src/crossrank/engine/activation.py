"""Score activations. ``auto`` means what the checkpoint declares (sentence-transformers' rule)."""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("auto", "raw", "identity", "sigmoid", "softmax", "tanh", "relu", "logsigmoid", "calibrated")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, split by sign so neither branch overflows in exp."""
    logits = np.asarray(logits)
    out = np.empty_like(logits, dtype=np.result_type(logits.dtype, np.float32))
    pos = logits >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-logits[pos]))
    e = np.exp(logits[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def apply(name: str, logits: np.ndarray) -> np.ndarray:
    """Apply an activation to (rows, labels) logits; ``raw``/``identity`` return them unchanged."""
    if name in ("raw", "identity"):
        return logits
    if name == "sigmoid":
        return sigmoid(logits)
    if name == "softmax":
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    if name == "tanh":
        return np.tanh(logits)
    if name == "relu":
        return np.maximum(logits, 0.0)
    if name == "logsigmoid":  # log(sigmoid(x)) = -log(1 + e^-x), written so neither sign overflows
        return -np.logaddexp(0.0, -logits)
    if name == "calibrated":
        raise ValueError("the calibrated activation needs the model's calibration (CrossEncoder applies it)")
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
