"""Calibration maps: Platt recovers a known curve, isotonic is monotone, both cut the calibration error,
and the engine applies a stored calibration without changing any ranking."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from crossrank import CrossEncoder
from crossrank.engine.calibration import Calibration, expected_calibration_error, fit, load
from crossrank.errors import InputError

pytest.importorskip("scipy")


def synthetic(n: int = 4000, seed: int = 0):
    """Logits whose true relevance probability is sigmoid(2z - 1): the plain sigmoid is miscalibrated."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * z - 1)))).astype(float)
    return z, y


def test_platt_recovers_the_curve_and_cuts_ece():
    z, y = synthetic()
    cal = fit(z, y, "platt")
    assert cal.params["a"] == pytest.approx(2.0, abs=0.25) and cal.params["b"] == pytest.approx(-1.0, abs=0.2)
    zt, yt = synthetic(seed=1)
    before = expected_calibration_error(1 / (1 + np.exp(-zt)), yt)
    after = expected_calibration_error(cal.apply(zt), yt)
    assert after < before / 2


def test_isotonic_is_monotone_and_bounded():
    z, y = synthetic()
    cal = fit(z, y, "isotonic")
    grid = np.linspace(-10, 10, 500)
    p = cal.apply(grid)
    assert np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 1
    zt, yt = synthetic(seed=2)
    assert expected_calibration_error(cal.apply(zt), yt) < expected_calibration_error(1 / (1 + np.exp(-zt)), yt)


def test_bad_fits_are_input_errors():
    with pytest.raises(InputError):
        fit(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(InputError):
        fit(np.array([0.1, 0.2]), np.array([1, 0]), "beta")
    with pytest.raises(InputError, match="same score"):
        fit(np.full(20, 5.0), np.array([1, 1] + [0] * 18))


def test_calibration_never_reverses_or_ties_a_ranking():
    """Scores that run against the labels get a flat-but-increasing Platt map, not a decreasing one; an
    isotonic map's flat steps still separate different logits."""
    z = np.linspace(-3, 3, 40)
    against = (z < 0).astype(float)  # the higher the logit, the less relevant
    platt = fit(z, against, "platt")
    assert platt.params["a"] > 0 and np.all(np.diff(platt.apply(z)) > 0)
    iso = fit(*synthetic(), "isotonic")
    grid = np.arange(-20, 20, 1e-3)  # logits 0.001 apart (float32 scores had tied them across 0.01)
    assert np.all(np.diff(iso.apply(grid)) > 0)  # strictly: ranking by it is ranking by the logit
    assert np.all(np.diff(platt.apply(grid)) > 0)


def test_engine_applies_a_stored_calibration(tiny_model, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    pairs = [("crocs", "crocs clog"), ("crocs", "wing lift"), ("heat", "heat flow"), ("heat", "red shoe")]
    raw = CrossEncoder(str(model), activation="raw").score(pairs)
    with pytest.raises(InputError, match="no calibration"):
        CrossEncoder(str(model), activation="calibrated")
    Calibration("platt", {"a": 3.0, "b": 0.5}).save(model)
    ce = CrossEncoder(str(model))
    assert ce.activation == "calibrated"
    np.testing.assert_allclose(ce.score(pairs), 1 / (1 + np.exp(-(3.0 * raw + 0.5))), atol=1e-5)
    np.testing.assert_allclose(ce.score(pairs, activation="raw"), raw, atol=1e-6)
    assert [i for i, *_ in ce.rank("crocs", ["wing lift", "crocs clog"])] == \
        [i for i, *_ in CrossEncoder(str(model), activation="raw").rank("crocs", ["wing lift", "crocs clog"])]
    # A flat isotonic step over the whole range these logits take: the order is still the logits'.
    docs = [" ".join(f"w{(i * 7 + j) % 50}" for j in range(i % 9 + 1)) for i in range(40)]
    by_logit = [i for i, *_ in CrossEncoder(str(model), activation="raw").rank("w3 w5", docs)]
    Calibration("isotonic", {"xs": [-50.0, 50.0], "ys": [0.3, 0.3]}).save(model)
    assert [i for i, *_ in CrossEncoder(str(model)).rank("w3 w5", docs)] == by_logit
    (model / "calibration.json").write_text(json.dumps({"method": "nope", "params": {}}))
    with pytest.raises(InputError, match="unknown calibration"):
        load(model)


@pytest.mark.parametrize("stored", [[1], {"method": "platt", "params": {}}, {"method": "platt", "params": None},
                                    {"method": "platt", "params": {"a": -1.0, "b": 0.0}},
                                    {"method": "isotonic", "params": {"xs": [], "ys": []}},
                                    {"method": "isotonic", "params": {"xs": [0, 1, 2], "ys": [0.1, 0.5]}},
                                    {"method": "isotonic", "params": {"xs": [2, 1, 0], "ys": [0.1, 0.5, 0.9]}}])
def test_a_damaged_or_decreasing_calibration_is_refused_at_load(tmp_path, stored):
    """Each was a KeyError/TypeError on every score() call, or (a < 0, descending xs) a reversed ranking."""
    (tmp_path / "calibration.json").write_text(json.dumps(stored))
    with pytest.raises(InputError):
        load(tmp_path)
