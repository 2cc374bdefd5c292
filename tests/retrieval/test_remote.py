"""Remote rankers against a real HTTP server on 127.0.0.1 that can be made slow, failing or malformed."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crossrank.errors import InputError
from crossrank.retrieval import RankerUnavailable, RemoteRanker, build_pipeline

QUERY = "family movie about bears in the woods"


def _overlap(query: str, text: str) -> float:
    """The stand-in model: how many query words the text contains."""
    words = set(query.lower().split())
    return float(sum(w in words for w in text.lower().split()))


class RankerService:
    """A reranking service speaking Cohere (/v1/rerank), TEI (/rerank) and plain (/score).

    The first path segment picks a behaviour: /ok, /slow (sleeps past the client's timeout),
    /error (HTTP 500), /badrequest (HTTP 400), /flaky (503 once, then ok), /garbage (not JSON),
    /badindex (an index out of range), /noresults (JSON without the result list), /partial (one
    document left out), /bigint (a score no float holds), /dribble (the answer a byte at a time), /deep (arrays nested
    100,000 deep), /pause (answers after 0.3 s), /crawl (headers at once, then the answer in two halves 0.45 s apart).
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.flaky_failures = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mode, _, endpoint = self.path.strip("/").partition("/")
                service.requests.append({"mode": mode, "endpoint": endpoint, "body": body,
                                         "auth": self.headers.get("Authorization")})
                if mode == "slow":
                    time.sleep(1.0)
                if mode == "pause":
                    time.sleep(0.3)
                if mode == "error" or (mode == "flaky" and service.flaky_failures == 0):
                    service.flaky_failures += mode == "flaky"
                    return self._send(503 if mode == "flaky" else 500, b'{"error": "boom"}')
                if mode == "badrequest":
                    return self._send(400, b'{"error": "bad"}')
                if mode == "busy" and service.flaky_failures == 0:  # 429 once, asking for a second's wait
                    service.flaky_failures += 1
                    return self._send(429, b'{"error": "overloaded"}', {"Retry-After": "1"})
                if mode == "echo":  # a 404 that quotes the request line, as many servers' error pages do
                    return self._send(404, f"no route for {self.path}".encode())
                if mode == "moved":
                    return self._send(308, b"", {"Location": "https://user:pw@elsewhere.example/v1/rerank"})
                texts = body.get("documents") or body.get("texts") or body.get("chunks")
                if mode == "tei32" and len(texts) > 32:  # TEI's default --max-client-batch-size
                    return self._send(413, b'{"error": "batch size 50 > maximum allowed batch size 32"}')
                if mode == "garbage":
                    return self._send(200, b"<html>not json</html>")
                if mode == "deep":  # valid JSON nested past Python's recursion limit
                    return self._send(200, b"[" * 100_000 + b"]" * 100_000)
                texts = body.get("documents") or body.get("texts") or body.get("chunks")
                scores = [_overlap(body["query"], t) for t in texts]
                order = sorted(range(len(texts)), key=lambda i: -scores[i])
                if mode == "badindex":
                    order = [len(texts) + 5]
                if mode == "partial":
                    order = order[:-1]
                if endpoint == "v1/rerank":
                    order = order[: body.get("top_n", len(order))]
                    answer = {"results": [{"index": i, "relevance_score": scores[i] if i < len(scores) else 1.0}
                                          for i in order]}
                elif endpoint == "rerank":
                    answer = [{"index": i, "score": scores[i] if i < len(scores) else 1.0} for i in order]
                else:
                    answer = [[i, scores[i] if i < len(scores) else 1.0] for i in order]
                if mode == "noresults":
                    answer = {"id": "x"}
                payload = json.dumps(answer).encode()
                if mode == "bigint":  # a JSON integer with 401 digits
                    payload = b'{"results": [{"index": 0, "relevance_score": 1' + b"0" * 400 + b"}]}"
                if mode == "crawl":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    try:
                        for half in (payload[: len(payload) // 2], payload[len(payload) // 2:]):
                            time.sleep(0.45)
                            self.wfile.write(half)
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return None
                if mode == "dribble":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    try:
                        for byte in payload:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.1)
                    except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                        pass
                    return None
                return self._send(200, payload)

            def _send(self, status, payload, headers=None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def _running_service():
    s = RankerService()
    yield s
    s.close()


@pytest.fixture
def service(_running_service):
    _running_service.requests.clear()
    _running_service.flaky_failures = 0
    return _running_service


@pytest.mark.parametrize("dialect,path", [("cohere", "v1/rerank"), ("tei", "rerank"), ("plain", "score")])
def test_each_dialect_ranks_and_sends_its_request_shape(service, dialect, path):
    ranker = RemoteRanker(f"{service.url}/ok/{path}", dialect=dialect, model="rerank-v3", api_key="secret")
    texts = ["stock market", "bears in the woods", "a family of bears in the woods"]
    ranking = ranker.rank(QUERY, texts)
    assert ranking.order.tolist() == [2, 1, 0]
    assert ranking.scores.tolist() == [5.0, 4.0, 0.0]
    request = service.requests[-1]
    assert request["endpoint"] == path and request["auth"] == "Bearer secret"
    expected = {"cohere": {"query": QUERY, "documents": texts, "top_n": 3, "model": "rerank-v3"},
                "tei": {"query": QUERY, "texts": texts, "truncate": True},  # probabilities: one min_score scale
                "plain": {"query": QUERY, "chunks": texts, "model": "rerank-v3"}}[dialect]
    assert request["body"] == expected
    assert ranker.available()


def test_base_url_gets_the_dialect_path(service):
    assert RemoteRanker(service.url, dialect="tei").endpoint == f"{service.url}/rerank"
    assert RemoteRanker(service.url + "/", dialect="cohere").endpoint == f"{service.url}/v1/rerank"
    assert RemoteRanker(f"{service.url}/ok/score", dialect="plain").endpoint == f"{service.url}/ok/score"
    assert RemoteRanker(f"{service.url}?key=1", dialect="tei").endpoint == f"{service.url}/rerank?key=1"
    with pytest.raises(InputError):
        RemoteRanker("ftp://example.org")
    with pytest.raises(InputError, match="dialect"):
        RemoteRanker(service.url, dialect="soap")
    for url in ("http://[::1", None, b"http://127.0.0.1"):
        with pytest.raises(InputError, match="not an http"):
            RemoteRanker(url)
    with pytest.raises(InputError, match="ASCII"):
        RemoteRanker(service.url, api_key="clé")


@pytest.mark.parametrize("mode,why", [("slow", "timed out"), ("error", "HTTP 500"), ("garbage", "invalid JSON"),
                                      ("badindex", "bad index"), ("noresults", "without a result list"),
                                      ("badrequest", "HTTP 400"), ("partial", "answered 1 of 2"),
                                      ("bigint", "bad relevance_score"), ("dribble", "timed out"),
                                      ("deep", "invalid JSON")])
def test_failures_raise_ranker_unavailable(service, mode, why):
    ranker = RemoteRanker(f"{service.url}/{mode}/v1/rerank", timeout=0.3, retries=0)
    with pytest.raises(RankerUnavailable, match=why):
        ranker.rank(QUERY, ["a", "b"])
    assert not ranker.available()


def test_timeout_bounds_an_attempt_as_a_whole(service):
    """Each read of /crawl arrives within the timeout; the answer as a whole does not: give up at the
    timeout, not after the next read (which took up to twice it)."""
    ranker = RemoteRanker(f"{service.url}/crawl/v1/rerank", timeout=0.5, retries=0)
    started = time.perf_counter()
    with pytest.raises(RankerUnavailable, match="timed out"):
        ranker.rank(QUERY, ["a", "b"])
    assert time.perf_counter() - started < 0.8  # the second half comes at 0.9 s
    assert RemoteRanker(f"{service.url}/crawl/v1/rerank", timeout=2.0).rank(QUERY, ["a"]).order.tolist() == [0]


def test_one_ranker_serves_many_threads_and_a_close_mid_flight_falls_back(service):
    from concurrent.futures import ThreadPoolExecutor

    shared = RemoteRanker(f"{service.url}/pause/v1/rerank", timeout=5.0, retries=0)
    with ThreadPoolExecutor(40) as pool:  # more than any worker pool a ranker might have had
        orders = list(pool.map(lambda _: shared.rank(QUERY, ["x", "bears"]).order.tolist(), range(40)))
    assert orders == [[1, 0]] * 40

    closing = RemoteRanker(f"{service.url}/slow/v1/rerank", timeout=5.0, retries=0)

    def call(_):
        try:
            closing.rank(QUERY, ["a"])
        except RankerUnavailable:
            return "unavailable"
        return "ok"

    with ThreadPoolExecutor(120) as pool:
        futures = [pool.submit(call, i) for i in range(120)]  # some still queued when it closes
        time.sleep(0.3)
        closing.close()
        outcomes = [f.result() for f in futures]  # no CancelledError or RuntimeError escapes
    assert set(outcomes) <= {"ok", "unavailable"} and "unavailable" in outcomes


def test_retries_after_a_5xx_but_not_after_a_4xx(service):
    flaky = RemoteRanker(f"{service.url}/flaky/v1/rerank", retries=1, backoff_s=0.01)
    assert flaky.rank(QUERY, ["bears", "x"]).order.tolist() == [0, 1]
    assert [r["mode"] for r in service.requests] == ["flaky", "flaky"]
    bad = RemoteRanker(f"{service.url}/badrequest/v1/rerank", retries=3, backoff_s=0.01)
    with pytest.raises(RankerUnavailable):
        bad.rank(QUERY, ["x"])
    assert sum(r["mode"] == "badrequest" for r in service.requests) == 1


def test_unreachable_service_is_unavailable():
    ranker = RemoteRanker("http://127.0.0.1:9/v1/rerank", timeout=0.5, retries=0)
    assert not ranker.available()


def test_pipeline_uses_the_remote_ranker(sample_index, service):
    search = build_pipeline(sample_index, ranker=RemoteRanker(f"{service.url}/ok/v1/rerank"))
    result = search(QUERY, top_k=5, window=10)
    assert result.method == "bm25+dense/rrf+rerank" and result.fallback is None and result.window == 10
    scores = [h.score for h in result]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == max(_overlap(QUERY, sample_index.corpus.text_at(h.position, ["title", "text"]))
                            for h in result)


@pytest.mark.parametrize("mode", ["slow", "error", "garbage", "badindex"])
def test_pipeline_keeps_first_stage_order_when_the_ranker_fails(sample_index, service, caplog, mode):
    first = build_pipeline(sample_index)(QUERY, top_k=5)
    search = build_pipeline(sample_index, ranker=RemoteRanker(f"{service.url}/{mode}/v1/rerank", timeout=0.3,
                                                              retries=0))
    result = search(QUERY, top_k=5, window=10)
    assert result.ids == first.ids
    assert result.method == "bm25+dense/rrf" and result.window == 0
    assert result.fallback and "kept first-stage order" in result.fallback
    assert all(h.stage_rank("rerank") is None for h in result)
    assert "kept first-stage order" in caplog.text


def test_options_are_checked_and_a_closed_ranker_falls_back(sample_index, service):
    """timeout=nan was a ValueError from httpx, backoff_s=-1 one from time.sleep after the first 5xx, and a
    closed ranker's RuntimeError failed the search instead of falling back to first-stage order."""
    for kwargs in ({"timeout": float("nan")}, {"timeout": float("inf")}, {"timeout": "1"}, {"retries": 1.5},
                   {"retries": None}, {"backoff_s": -1}):
        with pytest.raises(InputError):
            RemoteRanker(f"{service.url}/ok/v1/rerank", **kwargs)
    ranker = RemoteRanker(f"{service.url}/ok/v1/rerank")
    ranker.close()
    result = build_pipeline(sample_index, ranker=ranker)(QUERY, top_k=5, window=10)
    assert result.fallback and "closed" in result.fallback
    assert result.ids == build_pipeline(sample_index)(QUERY, top_k=5).ids


def test_long_lists_go_as_several_requests_within_the_services_limit(service):
    """A stock TEI refuses more than 32 texts a request (413): every rerank of a longer window fell back."""
    texts = [f"bears in the woods {i}" if i % 7 == 0 else f"stock market {i}" for i in range(50)]
    ranking = RemoteRanker(f"{service.url}/tei32/rerank", dialect="tei").rank(QUERY, texts)
    assert sorted(len(r["body"]["texts"]) for r in service.requests) == [18, 32]
    assert set(ranking.order[:8].tolist()) == {i for i in range(50) if i % 7 == 0}
    assert ranking.stages["rerank"].tolist() == [_overlap(QUERY, t) for t in texts]
    service.requests.clear()
    RemoteRanker(f"{service.url}/ok/score", dialect="plain", max_documents=20).rank(QUERY, texts)
    assert sorted(len(r["body"]["chunks"]) for r in service.requests) == [10, 20, 20]


def test_a_429_is_retried_after_the_wait_it_asks_for_and_a_redirect_is_named(service):
    ranker = RemoteRanker(f"{service.url}/busy/v1/rerank", timeout=5, retries=1)
    started = time.monotonic()
    assert ranker.rank(QUERY, ["bears", "stock"]).order.tolist() == [0, 1]
    assert time.monotonic() - started >= 0.9  # Retry-After: 1, not the 0.05 s backoff
    with pytest.raises(RankerUnavailable, match="HTTP 308, redirected to https://elsewhere.example/v1/rerank"):
        RemoteRanker(f"{service.url}/moved/v1/rerank", retries=0).rank(QUERY, ["a"])


def test_credentials_never_appear_in_messages_or_repr(service, caplog):
    import base64
    import logging

    caplog.set_level(logging.INFO)  # httpx's own request lines too
    url = "http://alice:hunter2@127.0.0.1:9/v1/rerank?api_key=sekrit&v=2"
    ranker = RemoteRanker(url, api_key="sk-TOKEN\n", timeout=0.3, retries=1)  # a key read from a file
    with pytest.raises(RankerUnavailable) as failed:
        ranker.rank(QUERY, ["a"])
    host = service.url.removeprefix("http://")
    echo = RemoteRanker(f"http://alice:hunter2@{host}/echo/v1/rerank?api_key=sekrit", retries=0)
    with pytest.raises(RankerUnavailable) as echoed:  # the server quotes the URL back in its error page
        echo.rank(QUERY, ["a"])
    assert service.requests[-1]["auth"] == "Basic " + base64.b64encode(b"alice:hunter2").decode()
    shown = f"{failed.value} {ranker!r} {echoed.value} {caplog.text}"
    assert "127.0.0.1:9/v1/rerank?api_key=***&v=***" in shown and "HTTP Request" in caplog.text
    for secret in ("hunter2", "alice", "sekrit", "sk-TOKEN"):
        assert secret not in shown
    with pytest.raises(InputError, match="control character"):
        RemoteRanker(service.url, api_key="sk-a\rb")
    with pytest.raises(InputError, match="not an http") as bad:
        RemoteRanker("htps://bob:hunter2@ranker.internal/?api_key=TOPSECRET")
    assert "hunter2" not in str(bad.value) and "TOPSECRET" not in str(bad.value)


def test_time_queued_behind_other_attempts_is_not_an_attempts_timeout(service, monkeypatch):
    """A window sent as several requests, or many searches at once, queue attempts: the queue's wait
    counted against each attempt's timeout, and searches fell back though the service answered in time."""
    from concurrent.futures import ThreadPoolExecutor

    from crossrank.retrieval import remote

    monkeypatch.setattr(remote, "CONNECTIONS", 2)  # a small pool, so six searches queue
    ranker = RemoteRanker(f"{service.url}/pause/v1/rerank", timeout=0.6, retries=0)  # answers in 0.3 s
    with ThreadPoolExecutor(6) as pool:
        rankings = list(pool.map(lambda _: ranker.rank(QUERY, ["bears", "stock"]), range(6)))
    assert [r.order.tolist() for r in rankings] == [[0, 1]] * 6
    assert RemoteRanker(service.url, dialect="plain").max_documents == 1000  # crossrank serve's own limit


def test_texts_are_read_as_the_local_engine_reads_them(service):
    """A lone surrogate raised UnicodeEncodeError out of the ranker, past the pipeline's fallback."""
    ranker = RemoteRanker(f"{service.url}/ok/v1/rerank")
    assert ranker.rank(QUERY + "\ud800", ["bears \udc00 in the woods", "stock"]).order.tolist() == [0, 1]
    with pytest.raises(InputError):
        ranker.rank(QUERY, [b"\xff not UTF-8"])
