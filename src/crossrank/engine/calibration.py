"""Score calibration: a monotone map from a model's raw logit to the probability of relevance.

Raw cross-encoder scores are not comparable across models or domains, so a threshold such as
``min_score=0.5`` means something different for each. ``crossrank calibrate`` fits a map on labelled
data (Platt: a logistic curve in the logit; isotonic: a monotone step function, interpolated) and
stores it as ``calibration.json`` beside the model; the engine then reads it and, unless told otherwise,
returns calibrated probabilities. Monotone maps never change a ranking, only what a score means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.engine.activation import sigmoid
from crossrank.errors import InputError

MIN_SLOPE = 1e-3  # Platt's slope floor: strictly increasing, so rankings survive calibration
TIE_BREAK = 1e-4  # isotonic: at most this much added, to separate logits within one flat step

FILE = "calibration.json"
METHODS = ("platt", "isotonic")


@dataclass
class Calibration:
    """``platt``: p = sigmoid(a·z + b); ``isotonic``: p = interp(z, xs, ys) with ys non-decreasing."""

    method: str
    params: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "platt":
            out = sigmoid(self.params["a"] * z + self.params["b"])
        else:
            # The fitted steps are flat in places; a tie-breaker below any precision a probability needs
            # (1e-4) keeps the map strictly increasing, so ranking by it is ranking by the logit. In
            # float64 only: its slope (5e-6 per logit unit at 0) is under float32's resolution, where
            # logits up to ~0.01 apart tied and fell back to first-stage order.
            steps = np.interp(z, self.params["xs"], self.params["ys"])
            out = (1 - TIE_BREAK) * steps + TIE_BREAK * (np.tanh(z / 10) + 1) / 2  # stays within [0, 1]
        return out

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FILE
        path.write_text(json.dumps({"method": self.method, "params": self.params, **self.info}, indent=2))
        return path


def load(directory: Path) -> Calibration | None:
    """The calibration stored beside a model, if there is one."""
    path = Path(directory) / FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        method, params = data.pop("method"), data.pop("params")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path} is not a crossrank calibration ({type(exc).__name__}: {exc})") from None
    if method not in METHODS:
        raise InputError(f"{path}: unknown calibration method {method!r}")
    problem = _params_problem(method, params)
    if problem:  # a hand-edited or damaged file: refused at load, not a KeyError or a reversed ranking per call
        raise InputError(f"{path}: {problem}")
    return Calibration(method, params, data)


def _params_problem(method: str, params: Any) -> str | None:
    """Why ``params`` cannot be the increasing map a calibration must be, or None."""
    if not isinstance(params, dict):
        return "params must be an object"
    if method == "platt":
        a, b = params.get("a"), params.get("b")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in (a, b)):
            return "Platt params a and b must be finite numbers"
        if a <= 0:  # type: ignore[operator]  # (fits before the MIN_SLOPE floor may hold a tiny positive slope)
            return f"Platt slope a={a} is not positive: the map would flatten or reverse every ranking"
        return None
    try:
        xs = np.asarray(params.get("xs"), dtype=np.float64)
        ys = np.asarray(params.get("ys"), dtype=np.float64)
    except (TypeError, ValueError):
        return "isotonic params xs and ys must be lists of numbers"
    if xs.ndim != 1 or xs.shape != ys.shape or len(xs) < 2 or not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return "isotonic params xs and ys must be two lists of finite numbers of one length, at least 2"
    if np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) < 0) or ys.min() < 0 or ys.max() > 1:
        return "isotonic xs must increase and ys must not decrease, within [0, 1]"
    return None


def fit(logits: np.ndarray, labels: np.ndarray, method: str = "platt") -> Calibration:
    """Fit a calibration on raw logits and binary relevance labels (scipy does the optimisation)."""
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = (np.asarray(labels).ravel() > 0).astype(np.float64)
    if len(z) != len(y) or len(z) < 2:
        raise InputError("calibration needs one label per score and at least two of them")
    if y.min() == y.max():
        raise InputError("calibration needs both relevant and non-relevant examples")
    if np.ptp(z) < 1e-6:
        raise InputError("the model gave (nearly) the same score to every example: there is nothing to calibrate")
    if method == "platt":
        from scipy.optimize import minimize

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            t = w[0] * z + w[1]
            # mean logistic loss and its gradient, written stably with logaddexp
            value = float(np.mean(np.logaddexp(0.0, t) - y * t))
            r = sigmoid(t) - y
            return value, np.array([np.mean(r * z), np.mean(r)])

        # The slope stays positive: a decreasing map would reverse every ranking made with it.
        res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                       bounds=[(MIN_SLOPE, None), (None, None)])
        return Calibration("platt", {"a": float(res.x[0]), "b": float(res.x[1])})
    if method == "isotonic":
        from scipy.optimize import isotonic_regression

        order = np.argsort(z, kind="stable")
        fitted = isotonic_regression(y[order]).x
        xs, idx = np.unique(z[order], return_index=True)
        # average the fitted values of tied scores, then keep the curve monotone
        ys = np.maximum.accumulate(np.add.reduceat(fitted, idx) / np.diff(np.append(idx, len(z))))
        return Calibration("isotonic", {"xs": xs.tolist(), "ys": ys.tolist()})
    raise InputError(f"unknown calibration method {method!r}; expected one of {METHODS}")


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE: the bin-weighted gap between mean predicted probability and observed relevance rate."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = (np.asarray(labels).ravel() > 0).astype(np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() / len(p) * abs(p[mask].mean() - y[mask].mean())
    return float(total)
