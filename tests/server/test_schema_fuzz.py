"""Schemathesis against the server's own OpenAPI schema, over real HTTP on loopback: every operation,
valid bodies (positive) and invalid ones (negative), no 5xx and no response that breaks its own schema.

The case count is bounded for CI (``CROSSRANK_FUZZ_EXAMPLES``, default 20 per operation and mode); the
longer run is ``CROSSRANK_FUZZ_EXAMPLES=500 python -m pytest tests/server/test_schema_fuzz.py``.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("CROSSRANK_FUZZ_EXAMPLES", "20"))
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def operations(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in ops}
    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/inference/cross/{name}", "/score", "/ready"} <= paths
    return ops


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_against_its_own_schema(server, operations, mode):
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # nothing to break: the ops routes take no input

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(base_url=server.url, timeout=30)
            assert response.status_code < 500 or response.status_code in (503, 504), (
                f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}")
            if mode is GenerationMode.POSITIVE:
                case.validate_response(response, checks=CHECKS)
            else:
                headers = {k.lower(): v for k, v in response.headers.items()}
                assert headers["content-type"][0].startswith(("application/json", "text/plain")), headers

        check()
