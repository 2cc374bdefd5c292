"""Cohere's official SDK (v1 and v2 clients) against the real server; Jina's shape on /v1/rerank."""

from __future__ import annotations

import cohere
import httpx
import numpy as np
import pytest

DOCS = ["crocs kids clog", "aircraft wing lift in a boundary layer flow", "the best red shoe", "running shoe"]


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x)))


def test_v2_client_parses_and_ranks(server, reference):
    co = cohere.ClientV2(api_key="unused", base_url=server.url)
    response = co.rerank(model="tiny", query="crocs shoe", documents=DOCS, top_n=3)
    expected = sigmoid(reference("crocs shoe", DOCS))
    assert [r.index for r in response.results] == list(np.argsort(-expected, kind="stable")[:3])
    for r in response.results:
        assert 0.0 <= r.relevance_score <= 1.0
        assert r.relevance_score == pytest.approx(expected[r.index], abs=1e-4)
    assert response.id and response.meta.api_version.version == "2"
    assert response.meta.tokens.input_tokens > 0


def test_v1_client_objects_rank_fields_and_documents(server, reference):
    co = cohere.Client(api_key="unused", base_url=server.url)
    docs = [{"title": "crocs", "body": "kids clog", "id": "a"}, {"title": "wing", "body": "lift", "id": "b"}]
    response = co.rerank(model="tiny", query="crocs", documents=docs, rank_fields=["title", "body"],
                         return_documents=True)
    expected = sigmoid(reference("crocs", ["crocs\nkids clog", "wing\nlift"]))
    assert {r.index for r in response.results} == {0, 1}
    for r in response.results:
        assert r.relevance_score == pytest.approx(expected[r.index], abs=1e-4)
        assert r.document.id == docs[r.index]["id"]  # the caller's object comes back whole
    plain = co.rerank(model="tiny", query="crocs", documents=["crocs clog", "wing"], return_documents=True)
    assert {r.document.text for r in plain.results} == {"crocs clog", "wing"}


def test_unknown_model_is_a_404_the_sdk_understands(server):
    co = cohere.ClientV2(api_key="unused", base_url=server.url)
    with pytest.raises(cohere.errors.NotFoundError) as info:
        co.rerank(model="../../etc/passwd", query="q", documents=["d"])
    assert "not served here" in info.value.body["message"]


def test_jina_shape_and_long_documents(server):
    long_doc = "crocs kids clog " * 2000  # far past the 64-token window: truncated, or chunked
    body = {"model": "tiny-chunked", "query": "crocs", "documents": [long_doc, "wing"], "return_documents": True,
            "top_n": 1}
    response = httpx.post(f"{server.url}/v1/rerank", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["model"] == "tiny-chunked" and data["usage"]["total_tokens"] > 0
    assert len(data["results"]) == 1 and data["results"][0]["document"]["text"] in (long_doc, "wing")
    v2 = httpx.post(f"{server.url}/v2/rerank", json={"model": "tiny", "query": "crocs", "documents": [long_doc],
                                                      "max_tokens_per_doc": 4096})
    assert v2.status_code == 200, v2.text
    # max_tokens_per_doc asks for more windows: more tokens than one 64-token window were read.
    assert v2.json()["meta"]["tokens"]["input_tokens"] > 64


@pytest.mark.parametrize(("body", "status"), [
    ({"model": "tiny", "query": "", "documents": ["a"]}, 400),
    ({"model": "tiny", "query": "q", "documents": []}, 400),
    ({"model": "tiny", "query": "q", "documents": [3]}, 422),
    ({"model": "tiny", "query": 7, "documents": ["a"]}, 422),
    ({"model": "tiny", "query": "q", "documents": ["a"], "top_n": 0}, 422),
    ({"model": "tiny", "query": "q", "documents": [{"x": 1}]}, 422),
    ({"model": "tiny", "query": "q", "documents": [{"text": "a"}], "rank_fields": []}, 422),
    ({"model": "tiny", "query": "q", "documents": ["a"] * 201}, 413),
    ({"model": "tiny", "query": "q", "documents": ["a"], "max_chunks_per_doc": 0}, 422),
])
def test_errors_are_cohere_json(server, body, status):
    response = httpx.post(f"{server.url}/v2/rerank", json=body)
    assert response.status_code == status, response.text
    # Cohere's "message", and Jina's "detail" that LangChain's and LlamaIndex's Jina clients read
    assert isinstance(response.json()["message"], str) and response.json()["detail"] == response.json()["message"]


def test_object_documents_rank_on_text_by_default_and_chunk_caps_are_capped(server):
    """Cohere ranks an object document on its "text" unless rank_fields says otherwise; a client's
    max_chunks_per_doc above the server's cap (Cohere's default is 10) is capped, not refused."""
    url = f"{server.url}/v1/rerank"
    objects = httpx.post(url, json={"model": "tiny", "query": "crocs", "documents": [
        {"title": "aircraft wing lift", "text": "crocs kids clog"}]}).json()
    plain = httpx.post(url, json={"model": "tiny", "query": "crocs", "documents": ["crocs kids clog"]}).json()
    assert objects["results"][0]["relevance_score"] == plain["results"][0]["relevance_score"]
    both = httpx.post(url, json={"model": "tiny", "query": "crocs", "rank_fields": ["title", "text"], "documents": [
        {"title": "aircraft wing lift", "text": "crocs kids clog"}]}).json()
    assert both["results"][0]["relevance_score"] != plain["results"][0]["relevance_score"]
    long = {"model": "tiny-chunked", "query": "crocs", "documents": ["aircraft wing lift " * 200 + "crocs kids clog"]}
    capped = httpx.post(url, json={**long, "max_chunks_per_doc": 10})
    at_cap = httpx.post(url, json={**long, "max_chunks_per_doc": server.config.server.max_chunks_per_doc})
    assert capped.status_code == 200 and capped.json()["results"] == at_cap.json()["results"]


def test_echoed_documents_nan_and_huge_max_tokens(server):
    headers = {"content-type": "application/json"}
    echoed = httpx.post(f"{server.url}/v1/rerank", headers=headers,
                        content='{"query": "a", "documents": ["\\udfff b"], "return_documents": true}')
    assert echoed.status_code == 200 and echoed.json()["results"][0]["document"]["text"] == "\udfff b"
    nan = httpx.post(f"{server.url}/v1/rerank", headers=headers, content=(
        '{"query": "shoe", "documents": [{"text": "red shoe", "x": [NaN]}], "return_documents": true}'))
    assert nan.status_code == 422 and "NaN" in nan.json()["message"]
    huge = httpx.post(f"{server.url}/v2/rerank", json={"query": "shoe", "documents": ["red shoe"],
                                                       "max_tokens_per_doc": 10**400})
    assert huge.status_code == 200 and len(huge.json()["results"]) == 1


def test_hostile_documents_and_rank_fields_are_4xx_without_the_memory(server):
    """A document nested hundreds deep was a 500 (RecursionError); rank_fields ["text"] * 20000 joined each
    document 20000 times before any length check (gigabytes from a 200 KB body)."""
    headers = {"content-type": "application/json"}
    deep = '{"query": "a", "documents": [{"text": "x", "meta": ' + "[" * 400 + "]" * 400 + "}]}"
    refused = httpx.post(f"{server.url}/v1/rerank", headers=headers, content=deep)
    assert refused.status_code == 422 and "nested deeper" in refused.json()["message"]
    shallow = '{"query": "a", "documents": [{"text": "x", "meta": ' + "[" * 20 + "]" * 20 + "}]}"
    assert httpx.post(f"{server.url}/v1/rerank", headers=headers, content=shallow).status_code == 200
    docs = [{"text": "red shoe " * 500}] * 10
    repeated = httpx.post(f"{server.url}/v1/rerank", json={"query": "red", "documents": docs,
                                                           "rank_fields": ["text"] * 20000})
    once = httpx.post(f"{server.url}/v1/rerank", json={"query": "red", "documents": docs, "rank_fields": ["text"]})
    assert repeated.status_code == 200 and repeated.json()["results"] == once.json()["results"]
    many = httpx.post(f"{server.url}/v1/rerank", json={"query": "red", "documents": docs,
                                                       "rank_fields": [f"f{i}" for i in range(65)]})
    assert many.status_code == 422 and "fields to rank on" in many.json()["message"]
