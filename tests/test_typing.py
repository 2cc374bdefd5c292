"""The public API as a user's type checker sees it (the package ships py.typed): names imported lazily
from ``crossrank`` and ``crossrank.retrieval`` were typed ``object``/``Any``, and a single query's search
result was a union a checker could not use without a cast."""

from __future__ import annotations

import subprocess
import sys

import pytest

USER_CODE = '''
from crossrank import CrossEncoder, Index, build_pipeline
from crossrank.retrieval import BM25, Dense, LocalRanker, SearchResult

index = Index.load("movies.idx")
one: SearchResult = build_pipeline(index)("bears", top_k=3)
for hit in one:
    print(hit.id, hit.score, one.hits[0].stage_rank("bm25"))
many: list[SearchResult] = ((BM25(index) | Dense(index)) + LocalRanker())(["a", "b"], depth=50)
scores = CrossEncoder().score([("q", "d")])
print(scores.shape, many[0].method)
best = CrossEncoder().rank("q", ["a", "b"], top_k=1)[0]
print(best.index, best["corpus_id"], best.score + 1.0)


class ObjectApiResponse:  # what elasticsearch-py 8+ returns: not a Mapping, the JSON is .body
    @property
    def body(self) -> dict[str, object]:
        return {"hits": {"hits": []}}


from crossrank import rerank_response, rerank_search_response

print(rerank_search_response(ObjectApiResponse(), "q", LocalRanker())["hits"],
      rerank_response({"response": {"docs": []}}, "q", LocalRanker()))
'''


def test_the_public_api_type_checks_strictly(tmp_path):
    pytest.importorskip("mypy")
    user = tmp_path / "user.py"
    user.write_text(USER_CODE)
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--ignore-missing-imports",
                           str(user)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
