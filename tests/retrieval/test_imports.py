"""The retrieval pieces are reachable from `crossrank` without paying for heavy imports up front."""

from __future__ import annotations

import subprocess
import sys


def test_import_crossrank_and_touch_retrieval_names_stays_light():
    code = ("import sys, crossrank; crossrank.Index; crossrank.BM25; crossrank.RemoteRanker; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'bm25s', 'usearch', 'transformers') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_unknown_name_is_an_attribute_error():
    import pytest

    import crossrank

    with pytest.raises(AttributeError):
        crossrank.NoSuchThing  # noqa: B018
    assert crossrank.build_pipeline.__module__ == "crossrank.retrieval.pipeline"
