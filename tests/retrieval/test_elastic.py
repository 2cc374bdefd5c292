"""Reranking an Elasticsearch _search response in place of its own shape."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from crossrank.errors import InputError
from crossrank.retrieval import RemoteRanker, rerank_search_response

QUERY = "crocs clog for kids"


def _response():
    docs = [("1", "running shoe", "fast running shoe"), ("2", "crocs", "kids crocs clog"),
            ("3", "wing", "aircraft wing lift"), ("4", "clog", "blue clog")]
    return {
        "took": 3, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": 4, "relation": "eq"}, "max_score": 4.0, "hits": [
            {"_index": "products", "_id": i, "_score": 4.0 - n, "_source": {"name": name, "description": desc}}
            for n, (i, name, desc) in enumerate(docs)]},
    }


def test_hits_come_back_reordered_by_the_ranker_in_the_same_shape(tiny_ranker):
    response = _response()
    original = copy.deepcopy(response)
    out = rerank_search_response(response, QUERY, tiny_ranker, on=["name", "description"])
    assert response == original  # the caller's dict is not modified
    assert set(out) == set(original) | {"_crossrank"} and out["took"] == 3
    texts = [f"{h['_source']['name']}\n{h['_source']['description']}" for h in original["hits"]["hits"]]
    expected = tiny_ranker.encoder.score([(QUERY, t) for t in texts])
    order = np.argsort(-expected, kind="stable")
    hits = out["hits"]["hits"]
    assert [h["_id"] for h in hits] == [original["hits"]["hits"][i]["_id"] for i in order]
    np.testing.assert_allclose([h["_score"] for h in hits], expected[order], rtol=1e-5)
    assert out["hits"]["max_score"] == pytest.approx(float(expected[order[0]]))
    for hit in hits:
        first = int(hit["_id"])
        assert hit["_crossrank"]["first_stage_rank"] == first
        assert hit["_crossrank"]["first_stage_score"] == 5.0 - first
        assert set(hit) == {"_index", "_id", "_score", "_source", "_crossrank"}
    assert out["_crossrank"]["method"] == "engine+rerank"


def test_window_leaves_the_tail_alone(tiny_ranker):
    out = rerank_search_response(_response(), QUERY, tiny_ranker, on=["name"], window=2)
    assert {h["_id"] for h in out["hits"]["hits"][:2]} == {"1", "2"}
    tail = out["hits"]["hits"][2:]
    assert [h["_id"] for h in tail] == ["3", "4"]
    # the engine's scores (2.0, 1.0) beside the ranker's would sort the tail first for a client
    assert [h["_score"] for h in tail] == [None, None]
    assert [h["_crossrank"] for h in tail] == [{"first_stage_rank": 3, "first_stage_score": 2.0, "rerank_rank": None},
                                               {"first_stage_rank": 4, "first_stage_score": 1.0, "rerank_rank": None}]
    assert out["hits"]["max_score"] == max(h["_score"] for h in out["hits"]["hits"][:2])


def test_failing_ranker_returns_the_engine_order():
    ranker = RemoteRanker("http://127.0.0.1:9/v1/rerank", timeout=0.3, retries=0)
    out = rerank_search_response(_response(), QUERY, ranker, on=["name"])
    assert out["hits"] == _response()["hits"]
    assert "kept the engine's order" in out["_crossrank"]["fallback"]


def test_bad_responses(tiny_ranker):
    with pytest.raises(InputError, match="hits.hits"):
        rerank_search_response({"error": "index_not_found"}, QUERY, tiny_ranker)
    response = _response()
    response["hits"]["hits"][1]["_source"] = "not an object"
    with pytest.raises(InputError, match="hit 1 has no _source or fields object"):
        rerank_search_response(response, QUERY, tiny_ranker, on=["name"])
    with pytest.raises(InputError, match="_msearch"):
        rerank_search_response({"took": 1, "responses": [_response()]}, QUERY, tiny_ranker)
    with pytest.raises(InputError, match="none of the fields"):
        rerank_search_response(_response(), QUERY, tiny_ranker, on=["price"])
    for bad in (None, "not json", 42):
        with pytest.raises(InputError, match="not an Elasticsearch"):
            rerank_search_response(bad, QUERY, tiny_ranker)
    for window in (-1, 2.5, True):
        with pytest.raises(InputError, match="window must be an integer"):
            rerank_search_response(_response(), QUERY, tiny_ranker, on=["name"], window=window)


def test_array_fields_are_scored_as_their_items(tiny_ranker):
    """Elasticsearch stores multi-valued fields as arrays: the text is the items, not a Python list's repr."""
    response = _response()
    for hit in response["hits"]["hits"]:
        hit["_source"]["tags"] = hit["_source"]["description"].split()
    by_array = rerank_search_response(response, QUERY, tiny_ranker, on=["tags"])
    as_lines = _response()
    for hit in as_lines["hits"]["hits"]:
        hit["_source"]["tags"] = "\n".join(hit["_source"]["description"].split())
    by_text = rerank_search_response(as_lines, QUERY, tiny_ranker, on=["tags"])
    assert [h["_score"] for h in by_array["hits"]["hits"]] == [h["_score"] for h in by_text["hits"]["hits"]]


def test_dotted_fields_and_sparse_hits(tiny_ranker):
    """Fields named as the engine names them: `author.name` through objects and arrays of objects, or a key
    that holds the dot; a hit with none of the fields ranks as an empty text instead of failing the call."""
    response = _response()
    sources = [h["_source"] for h in response["hits"]["hits"]]
    sources[0]["author"] = {"name": "Ann"}
    sources[1]["author"] = [{"name": "Bo"}, {"name": "Cy"}]
    sources[2]["author.name"] = "Di"
    del sources[3]["name"]
    out = rerank_search_response(response, QUERY, tiny_ranker, on=["name", "author.name"])
    texts = ["running shoe\nAnn", "crocs\nBo\nCy", "wing\nDi", ""]
    expected = tiny_ranker.encoder.score([(QUERY, t) for t in texts])
    by_id = {h["_id"]: h["_score"] for h in out["hits"]["hits"]}
    np.testing.assert_allclose([by_id[i] for i in "1234"], expected, rtol=1e-5)


def test_a_failing_local_engine_returns_the_engine_order():
    from crossrank.errors import BackendError

    class Broken:
        name = "rerank"

        def rank(self, query, texts):
            raise BackendError("onnxruntime failed on a batch")

    out = rerank_search_response(_response(), QUERY, Broken(), on=["name"])
    assert out["hits"] == _response()["hits"] and "onnxruntime failed" in out["_crossrank"]["fallback"]


def _solr():
    return {"responseHeader": {"status": 0, "QTime": 2, "params": {"q": "clog", "fl": "id,name,tags,score"}},
            "response": {"numFound": 4, "start": 0, "maxScore": 3.0, "numFoundExact": True, "docs": [
                {"id": "1", "name": "running shoe", "tags": ["fast", "road"], "score": 3.0},
                {"id": "2", "name": "crocs", "tags": ["kids", "clog"], "score": 2.0},
                {"id": "3", "name": "aircraft wing", "score": 1.5},
                {"id": "4", "name": "blue clog", "tags": ["clog"], "score": 1.0}]},
            "facet_counts": {"facet_fields": {"tags": ["clog", 2]}}}


def test_a_solr_response_comes_back_reordered_in_its_own_shape(tiny_ranker):
    from crossrank.retrieval import rerank_response, rerank_solr_response

    response = _solr()
    original = copy.deepcopy(response)
    out = rerank_solr_response(response, QUERY, tiny_ranker, on=["name", "tags"])
    assert response == original and out["facet_counts"] == original["facet_counts"]
    texts = [d["name"] + ("\n" + "\n".join(d["tags"]) if "tags" in d else "") for d in original["response"]["docs"]]
    expected = tiny_ranker.encoder.score([(QUERY, t) for t in texts])
    order = np.argsort(-expected, kind="stable")
    docs = out["response"]["docs"]
    assert [d["id"] for d in docs] == [str(i + 1) for i in order]
    np.testing.assert_allclose([d["score"] for d in docs], expected[order], rtol=1e-5)
    assert out["response"]["maxScore"] == pytest.approx(float(expected[order[0]]))
    assert [d["_crossrank"]["first_stage_score"] for d in docs] == [original["response"]["docs"][i]["score"]
                                                                    for i in order]
    assert out["_crossrank"]["method"] == "engine+rerank" and out["response"]["numFound"] == 4
    assert rerank_response(_solr(), QUERY, tiny_ranker, on=["name", "tags"]) == out  # told apart by shape
    assert rerank_response(_response(), QUERY, tiny_ranker, on=["name"]) == \
        rerank_search_response(_response(), QUERY, tiny_ranker, on=["name"])
    tail = rerank_solr_response(_solr(), QUERY, tiny_ranker, on=["name"], window=2)["response"]["docs"]
    assert {d["id"] for d in tail[:2]} == {"1", "2"} and [d["id"] for d in tail[2:]] == ["3", "4"]


def test_bad_solr_responses_say_what_is_wrong(tiny_ranker):
    from crossrank.retrieval import rerank_response, rerank_solr_response

    with pytest.raises(InputError, match="grouped response"):
        rerank_response({"responseHeader": {}, "grouped": {"name": {"groups": []}}}, QUERY, tiny_ranker)
    with pytest.raises(InputError, match="no response.docs"):
        rerank_solr_response({"response": {"numFound": 0}}, QUERY, tiny_ranker)
    with pytest.raises(InputError, match="none of the fields"):
        rerank_solr_response(_solr(), QUERY, tiny_ranker, on=["price"])
    empty = {"response": {"numFound": 0, "start": 0, "docs": []}}
    assert rerank_solr_response(empty, QUERY, tiny_ranker) == empty
    ranker = RemoteRanker("http://127.0.0.1:9/v1/rerank", timeout=0.3, retries=0)
    out = rerank_solr_response(_solr(), QUERY, ranker, on=["name"])
    assert out["response"] == _solr()["response"] and "kept the engine's order" in out["_crossrank"]["fallback"]


def test_hits_without_source_are_read_from_fields_and_client_objects_through_body(tiny_ranker):
    """`fields` (or `_source: false`) hits were refused; the Elasticsearch 8 client's ObjectApiResponse too."""
    with_source = rerank_search_response(_response(), QUERY, tiny_ranker, on=["name", "description"])
    fields = _response()
    for hit in fields["hits"]["hits"]:
        hit["fields"] = {k: [v] for k, v in hit.pop("_source").items()}
    from_fields = rerank_search_response(fields, QUERY, tiny_ranker, on=["name", "description"])
    assert [h["_id"] for h in from_fields["hits"]["hits"]] == [h["_id"] for h in with_source["hits"]["hits"]]
    filtered = _response()  # _source filtered to other fields, the text asked for with `fields`
    for hit in filtered["hits"]["hits"]:
        source = hit.pop("_source")
        hit["_source"], hit["fields"] = {"name": source["name"]}, {"description": [source["description"]]}
    from_both = rerank_search_response(filtered, QUERY, tiny_ranker, on=["name", "description"])
    assert [h["_id"] for h in from_both["hits"]["hits"]] == [h["_id"] for h in with_source["hits"]["hits"]]
    sparse = _response()
    del sparse["hits"]["hits"][1]["_source"]  # an index with _source disabled: ranked on nothing, not refused
    assert len(rerank_search_response(sparse, QUERY, tiny_ranker, on=["name"])["hits"]["hits"]) == 4

    class ObjectApiResponse:  # what elasticsearch-py 8+ returns from es.search(): the JSON is .body
        def __init__(self, body):
            self.body = body

    assert rerank_search_response(ObjectApiResponse(_response()), QUERY, tiny_ranker, on=["name"]) == \
        rerank_search_response(_response(), QUERY, tiny_ranker, on=["name"])


def test_the_next_pages_cursor_and_async_search_results(tiny_ranker):
    response = _response()
    for n, hit in enumerate(response["hits"]["hits"]):
        hit["sort"] = [1700 - n, hit["_id"]]
    out = rerank_search_response(response, QUERY, tiny_ranker, on=["name"])
    assert out["_crossrank"]["search_after"] == [1697, "4"]  # the engine's last hit, wherever it now stands
    async_result = {"id": "FmRl", "is_partial": False, "is_running": False, "response": _response()}
    from crossrank.retrieval import rerank_response

    for rerank in (rerank_search_response, rerank_response):
        wrapped = rerank(async_result, QUERY, tiny_ranker, on=["name"])
        assert wrapped["id"] == "FmRl"
        assert wrapped["response"] == rerank_search_response(_response(), QUERY, tiny_ranker, on=["name"])


def test_a_large_response_reranks_its_first_hundred(tiny_ranker):
    """Every hit was reranked by default: a 10,000-hit response took minutes on a CPU."""
    response = {"hits": {"hits": [{"_id": str(i), "_score": 500.0 - i, "_source": {"name": f"clog {i}"}}
                                  for i in range(150)]}}
    out = rerank_search_response(response, QUERY, tiny_ranker, on=["name"])
    assert out["_crossrank"]["window"] == 100
    assert [h["_id"] for h in out["hits"]["hits"][100:]] == [str(i) for i in range(100, 150)]
    assert rerank_search_response(response, QUERY, tiny_ranker, on=["name"], window=None)["_crossrank"]["window"] == 150
