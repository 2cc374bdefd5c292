"""Overload (429 + Retry-After), per-request timeouts and API keys, each on its own real server."""

from __future__ import annotations

import asyncio
import time

import cohere
import httpx
import pytest

LONG = ["crocs kids clog running shoe " * 12] * 200  # 200 documents, each a full 64-token window


async def _fire(url: str, n: int, body: dict) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(f"{url}/rerank", json=body) for _ in range(n)))


def test_overload_is_429_with_retry_after(start, tiny_config):
    with start(tiny_config(max_concurrent_requests=1, max_documents=4000, max_body_bytes=10_000_000)) as srv:
        # Each request is 2000 documents in several windows: it is still in flight when the others arrive.
        responses = asyncio.run(_fire(srv.url, 6, {"model": "tiny-chunked", "query": "crocs", "texts": LONG * 10}))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and 429 in statuses and set(statuses) <= {200, 429}
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["retry-after"] == "1" and refused.json()["error_type"] == "Overloaded"


def test_request_timeout_is_504_json(start, tiny_config):
    # 4000 documents x 4 windows of 64 tokens: far more than a millisecond of work even on the tiny model.
    with start(tiny_config(request_timeout_s=0.001, max_documents=4000, max_body_bytes=10_000_000)) as srv:
        response = httpx.post(f"{srv.url}/v2/rerank", json={"model": "tiny-chunked", "query": "crocs",
                                                             "documents": LONG * 20}, timeout=60)
        assert response.status_code == 504 and "longer than" in response.json()["message"]
        assert httpx.get(f"{srv.url}/health").status_code == 200  # the server lives on


def test_api_keys(start, tiny_model):
    from crossrank.server.config import config_from_dict

    config = config_from_dict({"models": {"tiny": {"model": str(tiny_model), "threads": 1}},
                               "server": {"api_keys": ["${TEST_CROSSRANK_KEY}", "${UNSET_CROSSRANK_KEY}"]}},
                              environ={"TEST_CROSSRANK_KEY": "s3cret-key"})
    assert config.server.api_keys == ["s3cret-key"]  # the unset variable adds no (empty) key
    body = {"model": "tiny", "query": "crocs", "documents": ["crocs clog"]}
    with start(config) as srv:
        assert cohere.ClientV2(api_key="s3cret-key", base_url=srv.url).rerank(**body).results[0].index == 0
        with pytest.raises(cohere.errors.UnauthorizedError):
            cohere.ClientV2(api_key="wrong", base_url=srv.url).rerank(**body)
        missing = httpx.post(f"{srv.url}/v2/rerank", json=body)
        assert missing.status_code == 401 and "s3cret" not in missing.text
        assert httpx.post(f"{srv.url}/v2/rerank", json=body, headers={"x-api-key": "s3cret-key"}).status_code == 200
        assert httpx.post(f"{srv.url}/rerank", json={"query": "q", "texts": ["a"]},
                          headers={"authorization": "Bearer nope"}).json()["error_type"] == "Validation"
        assert httpx.get(f"{srv.url}/info").status_code == 401
        assert httpx.get(f"{srv.url}/health").status_code == 200  # probes need no key
        # The key is checked before the body is read: no key, then neither a bad nor a huge body matters.
        for content in (b"{not json", b"x" * (srv.config.server.max_body_bytes + 1)):
            refused = httpx.post(f"{srv.url}/v2/rerank", content=content, headers={"content-type": "application/json"})
            assert refused.status_code == 401 and "message" in refused.json()
        assert httpx.get(f"{srv.url}/metrics").status_code == 200 and httpx.get(f"{srv.url}/docs").status_code == 200
        counted = [line for line in httpx.get(f"{srv.url}/metrics").text.splitlines()
                   if line.startswith("crossrank_requests_total") and 'status="401"' in line]
        assert any('route="/v2/rerank"' in line and 'model="-"' in line for line in counted)


def test_a_body_that_stalls_is_408_and_its_connection_is_closed(start, tiny_config):
    """A client that sends part of a body and stops must not hold a buffer and a connection forever."""
    import json
    import socket
    from urllib.parse import urlsplit

    with start(tiny_config(body_timeout_s=1)) as srv:
        url = urlsplit(srv.url)
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            sock.sendall(b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b'{"query": "q", ')
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        # a slow but steady upload is not a stall: pauses under the limit, 1.6 s in all
        payload = json.dumps({"query": "q", "texts": ["crocs kids clog"] * 20}).encode()
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            sock.sendall(b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(payload)).encode() + b"\r\nConnection: close\r\n\r\n")
            for i in range(4):
                time.sleep(0.4)
                sock.sendall(payload[i * len(payload) // 4:(i + 1) * len(payload) // 4])
            steady = b""
            while data := sock.recv(65536):
                steady += data
        assert steady.startswith(b"HTTP/1.1 200"), steady[:200]
        assert json.loads(body)["error_type"] == "Validation" and "stalled" in json.loads(body)["error"]
        assert httpx.post(f"{srv.url}/rerank", json={"query": "q", "texts": ["a"]}).status_code == 200


def test_a_client_that_leaves_mid_body_is_499_not_a_server_error(start, tiny_config):
    """Error-rate alerts read the 5xx counters: a client hanging up during its upload is not the server's."""
    import socket
    from urllib.parse import urlsplit

    with start(tiny_config()) as srv:
        url = urlsplit(srv.url)
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b'{"query": "q", ' + b" " * 1000)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counted = [line for line in httpx.get(f"{srv.url}/metrics").text.splitlines()
                       if line.startswith("crossrank_requests_total") and 'route="/v1/rerank"' in line]
            if counted:
                break
            time.sleep(0.1)
        assert counted and all('status="499"' in line for line in counted), counted


def test_a_models_own_cap_leaves_slots_for_the_others(start, tiny_model):
    """With a per-model max_concurrent_requests, a slow model refuses its own excess (429) while another
    model still gets served."""
    from crossrank.server.config import config_from_dict

    config = config_from_dict({
        "models": {"busy": {"model": str(tiny_model), "threads": 1, "max_chunks_per_doc": 4,
                            "max_concurrent_requests": 1},
                   "other": {"model": str(tiny_model), "threads": 1}},
        "server": {"max_concurrent_requests": 8, "max_documents": 4000, "max_body_bytes": 10_000_000}})

    async def scenario(url: str) -> tuple[list[int], int]:
        async with httpx.AsyncClient(timeout=60) as client:
            heavy = [asyncio.ensure_future(client.post(f"{url}/rerank", json={
                "model": "busy", "query": "crocs", "texts": LONG * 10})) for _ in range(4)]
            await asyncio.sleep(0.2)  # the first heavy request is in flight
            other = await client.post(f"{url}/rerank", json={"model": "other", "query": "crocs", "texts": ["a"]})
            return [r.status_code for r in await asyncio.gather(*heavy)], other.status_code

    with start(config) as srv:
        heavy, other = asyncio.run(scenario(srv.url))
    assert other == 200
    assert sorted(heavy)[0] == 200 and 429 in heavy and set(heavy) <= {200, 429}
