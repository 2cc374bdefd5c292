"""No body, however wrong, gets a 500 or a non-JSON answer from any scoring route."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROUTES = ["/v1/rerank", "/v2/rerank", "/rerank", "/inference/cross/tiny", "/score"]
KEYS = ["model", "query", "documents", "texts", "chunks", "input", "text", "top_n", "rank_fields",
        "return_documents", "raw_scores", "return_text", "max_chunks_per_doc", "max_tokens_per_doc"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=False),
                    st.text(max_size=30), st.sampled_from(["tiny", "tiny-chunked", "", " ", "crocs clog"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=12)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=6).map(lambda d: json.dumps(d).encode()),
    values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_no_500(server, route, body):
    response = httpx.post(f"{server.url}{route}", content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500 or response.status_code in (503, 504), response.text
    assert response.headers["content-type"].startswith("application/json")
    response.json()
