"""Schema-driven fuzzing of every public operation through the gateway (schemathesis).

Cases are generated from the gateway's combined OpenAPI document (``/api/docs/openapi.json``) and
sent with a valid customer token (the admin-only operations then answer 403, as documented by the
gateway's rules): no answer may be a 5xx, and every answer must match the schema documented for
its status code and content type. ``make test`` runs a few examples per operation
(``FUZZ_MAX_EXAMPLES``, default 5); ``make fuzz`` runs many more.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from devtools.shop import LocalShop

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "5"))


@pytest.fixture(scope="module")
def gateway_url(shop: LocalShop) -> str:
    if "gateway" not in shop.procs:
        pytest.skip("the fuzz run needs the gateway")
    return f"{shop.url('gateway')}"


@pytest.fixture(scope="module")
def customer_token(gateway_url: str) -> str:
    with httpx.Client(base_url=f"{gateway_url}/api", timeout=30) as client:
        email = f"fuzz-{os.urandom(5).hex()}@example.com"
        r = client.post("/auth/register", json={"email": email, "password": "correct horse battery", "name": "F"})
        assert r.status_code == 201, r.text
        r = client.post("/auth/login", json={"email": email, "password": "correct horse battery"})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


def test_no_operation_answers_5xx_or_breaks_its_documented_schema(gateway_url: str, customer_token: str) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway_url}/api/docs/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        # Valid requests and invalid ones (wrong types, missing fields, out-of-range values).
        cases = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                          operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

        @given(case=cases)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=gateway_url, headers={"Authorization": f"Bearer {customer_token}"},
                                   checks=[not_a_server_error, response_schema_conformance,
                                           content_type_conformance], timeout=15)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # one operation's failure must not hide the others'
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    print(f"fuzzed {operations} operations, {MAX_EXAMPLES} examples each")
    assert operations > 10, "the combined OpenAPI document lists too few operations"
    assert not failures, "\n\n".join(failures)
