"""Parity on the real MiniLM-L6 weights against transformers and sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest

from crossrank import CrossEncoder

pytestmark = pytest.mark.minilm

PAIRS = [
    ("what similarity laws must be obeyed when constructing aeroelastic models",
     "experimental investigation of the aerodynamics of a wing in a slipstream"),
    ("crocs", "Crocs Kids' Baya Clog"),
    ("crocs", "a long passage about boundary layers and heat transfer " * 30),
    ("heat conduction in composite slabs", "the problem of heat conduction in composite slabs is solved"),
]


@pytest.fixture(scope="module")
def minilm():
    from crossrank.engine.model import resolve

    return resolve("minilm-l6-untrained").path


def test_onnx_fp32_equals_sentence_transformers(minilm):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    st = STCrossEncoder(str(minilm), max_length=512, device="cpu")
    ref = st.predict(PAIRS)
    ours = CrossEncoder(minilm, backend="onnx").score(PAIRS)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_onnx_fp32_equals_transformers_logits(minilm):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(minilm)).eval()
    tok = AutoTokenizer.from_pretrained(str(minilm))
    enc = tok([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, truncation="only_second",
              max_length=512, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).logits[:, 0].numpy()
    np.testing.assert_allclose(CrossEncoder(minilm, activation="raw").score(PAIRS), ref, atol=1e-4)


def test_a_late_builder_keeps_the_built_model_in_place(minilm):
    """Two processes building the built-in at once: the one that finishes second must not delete the
    directory the first one already put in place (and others may be reading)."""
    from crossrank.engine.model import build_minilm_cross_encoder

    before = (minilm / "model.safetensors").stat().st_ino
    assert build_minilm_cross_encoder(minilm) == minilm
    assert (minilm / "model.safetensors").stat().st_ino == before
    assert not list(minilm.parent.glob(f"{minilm.name}.tmp*"))
