"""The service app fuzzed from its own OpenAPI schema (in-process, litestar's TestClient): every route and method the
schema lists gets malformed input (wrong types, missing and unknown fields, huge strings, bad ids, invalid JSON,
negative and out-of-range numbers, wrong content types and methods) and must never answer with a 5xx; every error
has the envelope ``{"error": {"code", "message", "detail"}}``. The inputs the fuzzing found 500s for (and the
messages that did not name the field) are pinned by ``test_inputs_the_fuzzing_found``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from synth_opt.service.app import create_app
from synth_opt.service.queue import open_queue

TOKEN = "fuzz-token"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class Call:
    """One HTTP request to send (a plain class: hypothesis prints it with this short ``repr``)."""

    def __init__(self, method: str, url: str, content: bytes | None, content_type: str | None) -> None:
        self.method, self.url, self.content, self.content_type = method, url, content, content_type

    def __repr__(self) -> str:  # huge inputs are shown cut short
        content = None if self.content is None else self.content[:300]
        return f"Call({self.method!r}, {self.url[:300]!r}, {content!r}, {self.content_type!r})"

    def send(self, client: TestClient[Litestar], headers: dict[str, str] | None = None) -> Any:
        sent = dict(headers or {})
        if self.content_type is not None:
            sent["content-type"] = self.content_type
        return client.request(self.method, self.url, content=self.content, headers=sent)


def service_root(root: Path) -> list[str]:
    """A config root with one valid config (whose run fails at once: its container exits as it starts), broken
    configs, a file that is not a config, and three finished requests in the database; returns their request
    ids."""
    (root / "blocker").write_text("not a directory\n", encoding="utf-8")
    (root / "gepa.toml").write_text(
        f"""
[run]
run_id = "fuzz"

[container]
command = [{sys.executable!r}, "-c", "raise SystemExit(3)"]

[dataset]
train_ids = {{count = 2}}

[proposer]
backend = "codex_app_server"
command = ["false"]

[cache]
mode = "off"
""",
        encoding="utf-8",
    )
    (root / "invalid.toml").write_text("[run]\nbogus = 1\n", encoding="utf-8")
    (root / "binary.toml").write_bytes(b"\xff\xfe\x00[run")
    (root / "folder.toml").mkdir()
    (root / "loop.toml").symlink_to(root / "loop.toml")
    run_dir = root / "runs" / "done"
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").write_bytes(
        b'{"type": "run.state", "sequence_number": 1}\n[1, 2]\nnot json\n\xff\xfe\n{"type": "run.state"'
    )
    with open_queue(root / "service.sqlite") as queue:
        cancelled = queue.submit(run_id="queued-then-cancelled", config_path=str(root / "gone.toml")).request
        queue.cancel(cancelled.request_id)
        ids = [cancelled.request_id]
        for run_id, error in (("done", None), ("broke", {"code": "run_failed", "message": "boom", "detail": {}})):
            queue.submit(run_id=run_id, config_path=str(root / "gone.toml"), run_dir=str(root / "runs" / run_id))
            claimed = queue.claim("seeder")
            assert claimed is not None
            queue.start(claimed.request_id, claimed.lease_token)
            result = {"manifest_path": str(run_dir / "missing.json"), "cost_usd": 0.5, "usage": {"total": {}}}
            queue.complete(claimed.request_id, result=result, error=error, lease_token=claimed.lease_token)
            ids.append(claimed.request_id)
    return ids


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient[Litestar], dict[str, Any], list[str]]]:
    ids = service_root(tmp_path)
    app = create_app(
        tmp_path / "service.sqlite", worker_id="fuzz", config_root=tmp_path, auto_start=False, allow_commands=True
    )
    with TestClient(app, timeout=30, raise_server_exceptions=False) as client:
        schema = client.get("/schema/openapi.json")
        assert schema.status_code == 200
        yield client, schema.json(), ids


def assert_well_formed(call: Call, response: Any) -> None:
    what = f"{call!r} -> {response.status_code}"
    assert response.status_code < 500, f"{what}: {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}, what
        error = body["error"]
        assert isinstance(error["code"], str) and error["code"], what
        assert isinstance(error["message"], str) and error["message"], what
    elif "text/event-stream" not in response.headers.get("content-type", "") and response.status_code != 204:
        assert isinstance(response.json(), dict), what


# -- strategies built from the schema ---------------------------------------------------------------------------

JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
HUGE = st.sampled_from([10_000, 100_000, 1_000_000]).map(lambda n: "x" * n)
HUGE_IN_URL = st.just("x" * 12_000)  # httpx refuses URLs over 64 KiB
NUMBERS = st.integers() | st.sampled_from([-1, 0, -(10**6) - 1, 10**6 + 1, 2**63, -(2**63) - 1, 10**30])
PATHS = st.sampled_from(
    [
        "gepa.toml",
        "invalid.toml",
        "binary.toml",
        "folder.toml",
        "loop.toml",
        "blocker",
        "service.sqlite",
        "../escape.toml",
        "/etc/passwd",
        "",
        ".",
        "a\x00b",
        "~/gepa.toml",
        "gepa.toml/",
        "a/" * 3000,
        "%2e%2e/gepa.toml",
    ]
)
BAD_JSON = st.sampled_from(
    [
        b"",
        b"{",
        b"null",
        b"[" * 50_000,
        b'{"a": ' * 20_000,
        b'{"config_path": NaN}',
        b'{"config_path": "gepa.toml", "priority": 1e400}',
        b'{"config_path": "\\ud800"}',
        b'{"config_path": "gepa.toml", "config_path": 3}',
        b"\xff\xfe\x00",
    ]
)


def value_of(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the schema's type (edge cases included) or of any other type."""
    if "oneOf" in schema:
        return st.one_of([value_of(choice) for choice in schema["oneOf"]])
    typed: st.SearchStrategy[Any] = {
        "string": st.text(max_size=40) | HUGE | PATHS,
        "integer": NUMBERS,
        "boolean": st.booleans(),
        "null": st.none(),
    }.get(schema.get("type", ""), JUNK)
    return typed | JUNK


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    resolved: dict[str, Any] = node
    return resolved


def body_of(schema: dict[str, Any] | None) -> st.SearchStrategy[bytes | None]:
    """JSON objects whose fields are missing, mistyped, huge or unknown; other JSON values; broken bytes."""
    junk = JUNK.map(lambda value: json.dumps(value).encode())
    if schema is None:
        return st.none() | junk | BAD_JSON
    properties = schema.get("properties", {})
    fields = st.fixed_dictionaries({}, optional={name: value_of(prop) for name, prop in properties.items()})
    unknown = st.dictionaries(st.text(min_size=1, max_size=10), JUNK, max_size=2)
    objects = st.tuples(fields, unknown | st.just({})).map(lambda pair: {**pair[1], **pair[0]})
    encoded = objects.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    return encoded | junk | BAD_JSON | st.binary(max_size=40)


def query_of(parameters: list[dict[str, Any]]) -> st.SearchStrategy[str]:
    values = (
        st.text(max_size=30) | NUMBERS.map(str) | HUGE_IN_URL | st.sampled_from(["", "queued", "1e3", "-5", "null"])
    )
    declared = [p["name"] for p in parameters if p["in"] == "query"]
    pairs = st.lists(st.tuples(st.sampled_from([*declared, "bogus"]), values), max_size=3)
    return pairs.map(lambda items: urlencode(items))


def path_value(ids: list[str]) -> st.SearchStrategy[str]:
    odd = st.sampled_from(["..", "%00", "a/b", " ", "req-" + "0" * 20, "\x00", "é", "-1"])
    return st.sampled_from(ids) | st.text(min_size=1, max_size=30) | HUGE_IN_URL | odd


def calls(document: dict[str, Any], ids: list[str]) -> st.SearchStrategy[Call]:
    choices = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            choices.append(
                st.builds(
                    _call,
                    method=st.sampled_from([method.upper()] * 4 + list(METHODS)),
                    path=st.just(path),
                    path_values=st.fixed_dictionaries(
                        {p["name"]: path_value(ids) for p in parameters if p["in"] == "path"}
                    ),
                    query=query_of(parameters),
                    content=body_of(None if body is None else resolve(body, document)),
                    content_type=st.sampled_from(["application/json"] * 4 + ["text/plain", "multipart/form-data"])
                    | st.none(),
                )
            )
    return st.one_of(choices)


def _call(
    method: str, path: str, path_values: dict[str, str], query: str, content: bytes | None, content_type: str | None
) -> Call:
    for name, value in path_values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return Call(method, f"{path}?{query}" if query else path, content, content_type)


# -- a fixed sweep of every route and method ------------------------------------------------------------------------

WRONG_VALUES: list[Any] = [None, True, -1, -(2**63) - 1, 10**30, 1.5, "", "s", "x" * 100_000, [], {}, [1, "a"]]
ODD_IDS = ["req-nope", "..", "%00", "\x00", "é", "a/b", " ", "-1", "x" * 12_000]
ODD_QUERY = ["", "-1", "0", "-99999999999999999999", "1e3", "abc", "null", "\x00", "queued", "x" * 12_000]
BAD_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"gepa.toml"',
    b"[" * 50_000,
    b'{"a": ' * 20_000,
    b'{"config_path": NaN}',
    b'{"config_path": "gepa.toml", "priority": 1e400}',
    b'{"config_path": "\\ud800"}',
    b'{"config_path": "gepa.toml", "config_path": 3}',
    b"\xff\xfe\x00",
]


def fixed_calls(document: dict[str, Any], ids: list[str]) -> list[Call]:
    """Every route and method of the schema, each with: odd ids in the path, odd values for each query parameter and
    an unknown one, broken JSON bodies, objects with each field missing or mistyped or an unknown field added, bodies
    under other content types, and every method the route does not have."""
    found: list[Call] = []
    for path, operations in document["paths"].items():
        for method in METHODS:
            if method.lower() not in operations:
                found.append(_call(method, path, {"request_id": ids[0]}, "", None, None))
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            names = [p["name"] for p in parameters if p["in"] == "path"]
            valid = dict.fromkeys(names, ids[-1])
            for odd in [*ids, *ODD_IDS] if names else []:
                found.append(_call(method.upper(), path, dict.fromkeys(names, odd), "", None, None))
            queries = ["bogus=1"]
            for name in (p["name"] for p in parameters if p["in"] == "query"):
                queries.extend(urlencode([(name, odd)]) for odd in ODD_QUERY)
                queries.append(urlencode([(name, "1"), (name, "2")]))
            found.extend(_call(method.upper(), path, valid, query, None, None) for query in queries)
            schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            bodies = list(BAD_BODIES)
            if schema is not None:
                base = {"config_path": "gepa.toml", "auto_start": False}
                bodies.append(json.dumps({**base, "unknown_field": 1}).encode())
                for name in resolve(schema, document).get("properties", {}):
                    bodies.append(json.dumps({k: v for k, v in base.items() if k != name}).encode())
                    bodies.extend(json.dumps({**base, name: wrong}).encode() for wrong in WRONG_VALUES)
            found.extend(_call(method.upper(), path, valid, "", body, "application/json") for body in bodies)
            for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
                body = b'{"config_path": "gepa.toml", "auto_start": false}'
                found.append(_call(method.upper(), path, valid, "", body, kind))
    return found


# -- the tests ----------------------------------------------------------------------------------------------------


def test_every_route_and_method_answers_a_sweep_of_malformed_inputs_without_a_5xx(
    served: tuple[TestClient[Litestar], dict[str, Any], list[str]],
) -> None:
    client, document, ids = served
    sweep = fixed_calls(document, ids)
    assert len(sweep) > 300
    failures = []
    for call in sweep:
        try:
            assert_well_formed(call, call.send(client))
        except AssertionError as failure:
            failures.append(str(failure).splitlines()[0])
    assert not failures, "\n".join(failures)


FUZZ = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def test_no_route_answers_malformed_input_with_a_5xx(
    served: tuple[TestClient[Litestar], dict[str, Any], list[str]],
) -> None:
    client, document, ids = served
    assert len(document["paths"]) >= 9

    @FUZZ
    @given(call=calls(document, ids))
    def fuzz(call: Call) -> None:
        assert_well_formed(call, call.send(client))

    fuzz()
    # the service is still sound: nothing leased or running is left behind, the queue's invariants hold
    assert client.get("/health").status_code == 200
    recovered = client.post("/worker/recover").json()
    assert recovered["recovered"] == 0 and recovered["invariants"]["status"] == "ok", recovered
    for request in client.get("/runs?limit=1000").json()["requests"]:
        assert request["status"] in {"queued", "completed", "failed", "cancelled"}, request


def test_a_bearer_token_refuses_every_malformed_authorization_with_a_401(tmp_path: Path) -> None:
    service_root(tmp_path)
    app = create_app(tmp_path / "service.sqlite", worker_id="fuzz", config_root=tmp_path, bearer_token=TOKEN)
    latin = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
    odd = st.sampled_from(["Bearer", "Bearer  ", f"Basic {TOKEN}", f"bearer {TOKEN}x", f"Bearer {TOKEN}\u00e9"])
    none: st.SearchStrategy[dict[str, str]] = st.just({})
    headers = none | (latin | odd).map(lambda value: {"Authorization": value})
    with TestClient(app, raise_server_exceptions=False) as client:

        @settings(max_examples=60, deadline=None, database=None)
        @given(header=headers, path=st.sampled_from(["/status", "/runs", "/workspace", "/schema/openapi.json"]))
        def fuzz(header: dict[str, str], path: str) -> None:
            response = client.get(path, headers={k.encode(): v.encode("latin-1") for k, v in header.items()})
            scheme, _, supplied = header.get("Authorization", "").partition(" ")
            if scheme.lower() == "bearer" and supplied.strip() == TOKEN:
                assert response.status_code == 200
                return
            assert_well_formed(Call("GET", path, None, None), response)
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"

        fuzz()
        assert client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_inputs_the_fuzzing_found(
    served: tuple[TestClient[Litestar], dict[str, Any], list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, ids = served

    def error(response: Any, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        found: dict[str, Any] = response.json()["error"]
        return found

    deep = client.post("/runs", content=b"[" * 50_000, headers={"content-type": "application/json"})
    assert error(deep, 400)["message"] == "the JSON body is nested too deeply"
    typo = error(client.post("/runs", json={"config_path": "gepa.toml", "priorty": 5, "auto_start": False}), 400)
    assert "priorty" in typo["message"] and typo["detail"]["errors"][0]["key"] == "priorty"
    assert client.get("/runs").json()["requests"][0]["run_id"] != "fuzz"  # nothing was queued
    mistyped = error(client.post("/runs", json={"config_path": "gepa.toml", "priority": "high"}), 400)
    assert "body field priority: Expected `int`, got `str`" in mistyped["message"]
    empty = error(client.post("/runs", content=b"", headers={"content-type": "application/json"}), 400)
    assert "request body is missing" in empty["message"]
    assert "query parameter limit" in error(client.get("/runs?limit=many"), 400)["message"]
    assert error(client.get("/runs?status=nope"), 422)["detail"]["field"] == "status"
    # a request whose run never started has no workspace: a 409 that says so, not a CLI hint about --db
    no_workspace = error(client.get(f"/workspace?request_id={ids[1]}"), 409)
    assert "has no run workspace" in no_workspace["message"] and no_workspace["code"] == "queue_conflict"
    # a request queued without a run directory reads nothing from the service's working directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.jsonl").write_text('{"type": "stranger", "sequence_number": 1}\n', encoding="utf-8")
    (tmp_path / "workspace.sqlite").write_bytes((tmp_path / "service.sqlite").read_bytes())
    assert error(client.get(f"/workspace?request_id={ids[0]}"), 409)["message"].endswith("once the run starts")
    events = client.get(f"/runs/{ids[0]}/events")
    assert events.status_code == 200 and "stranger" not in events.text and "event: end" in events.text
    # the accepted fields still work
    created = client.post("/runs", json={"config_path": "gepa.toml", "priority": 3, "auto_start": False})
    assert created.status_code == 201 and created.json()["run_id"] == "fuzz"
