"""docs/openapi.yaml against `kvsqueeze serve`: the document is valid OpenAPI 3.0 and the
one the server answers; real answers of every endpoint (whole, streamed event by event,
errors) conform to it; undeclared methods get 405 with the declared ones in Allow; and
schemathesis, fuzzing from the document, finds nothing (no 5xx, every status, content
type and body as documented, schema-violating requests refused)."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from conftest import REPO, STORIES
from served import KEY, Server

yaml = pytest.importorskip("yaml")
oas = pytest.importorskip("openapi_schema_validator")

SPEC_PATH = REPO / "docs" / "openapi.yaml"
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


@pytest.fixture(scope="module")
def spec() -> Dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def start(tmp: Path) -> Server:
    if not STORIES.exists():
        pytest.skip(f"no {STORIES}")
    return Server(STORIES, "--api-key", KEY, "--max-context", "256", "--context-dir", str(tmp))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start(tmp_path_factory.mktemp("contexts"))
    yield s
    s.stop()


def pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check(spec: Dict[str, Any], ref: str, value: Any) -> None:
    """Validates value against the schema at `ref` (refs resolve inside the document)."""
    oas.OAS30Validator({**spec, "$ref": ref}).validate(value)


def conforms(spec: Dict[str, Any], route: str, method: str, status: int, headers: Dict[str, str], body: bytes) -> None:
    """The answer's status, content type and body are what the document says for them."""
    responses = spec["paths"][route][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {route}: {status} is not documented"
    response = responses[str(status)]
    parts = ["paths", route, method.lower(), "responses", str(status)]
    if "$ref" in response:
        name = response["$ref"].split("/")[-1]
        response, parts = spec["components"]["responses"][name], ["components", "responses", name]
    ctype = headers.get("Content-Type", "").split(";")[0]
    assert ctype in response["content"], f"{method} {route} {status}: {ctype} is not documented"
    if ctype == "application/json":
        check(spec, pointer(*parts, "content", ctype, "schema"), json.loads(body))
    elif ctype == "text/event-stream":
        events = [e for e in body.decode().split("\n\n") if e]
        assert events[-1] == "data: [DONE]", events[-1]
        chunk = "ChatCompletionChunk" if route.endswith("chat/completions") else "CompletionChunk"
        for e in events:
            assert e.startswith("data: "), e
            check(spec, pointer(*parts, "content", ctype, "schema"), {"event": "message", "data": e[len("data: "):]})
            if e != "data: [DONE]":
                check(spec, pointer("components", "schemas", chunk), json.loads(e[len("data: "):]))


def test_the_document_is_valid_openapi_3(spec: Dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec)


def test_the_server_answers_the_document(server: Server, spec: Dict[str, Any]) -> None:
    status, headers, body = server.request("GET", "/openapi.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == spec
    assert server.request("GET", "/openapi.json", key="wrong")[0] == 401


def test_real_answers_of_every_endpoint_conform(server: Server, spec: Dict[str, Any]) -> None:
    story = "Once upon a time there was a little girl named Lily. She liked to play outside. "
    calls: List[tuple] = [
        ("GET", "/health", "/health", None, 200),
        ("GET", "/openapi.json", "/openapi.json", None, 200),
        ("GET", "/v1/models", "/v1/models", None, 200),
        ("GET", "/metrics", "/metrics", None, 200),
        ("POST", "/v1/completions", "/v1/completions", {"prompt": "Once upon", "max_tokens": 8, "temperature": 0}, 200),
        ("POST", "/v1/completions", "/v1/completions",
         {"prompt": story * 2, "max_tokens": 4, "kv_press": {"preset": "ada-snapkv", "budget": 16, "window": 4}}, 200),
        ("POST", "/v1/completions", "/v1/completions",
         {"prompt": "Once upon", "max_tokens": 6, "stream": True, "stream_options": {"include_usage": True}}, 200),
        ("POST", "/v1/completions", "/v1/completions", {"prompt": [1, 400, 50], "max_tokens": 3, "stop": "."}, 200),
        ("POST", "/v1/chat/completions", "/v1/chat/completions",
         {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0}, 200),
        ("POST", "/v1/chat/completions", "/v1/chat/completions",
         {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "stream": True}, 200),
        ("POST", "/v1/contexts", "/v1/contexts",
         {"text": story, "id": "doc", "persist": True, "kv_press": {"preset": "snapkv", "budget": 8, "window": 2}}, 200),
        ("GET", "/v1/contexts", "/v1/contexts", None, 200),
        ("POST", "/v1/completions", "/v1/completions", {"context_id": "doc", "prompt": " She", "max_tokens": 4}, 200),
        ("DELETE", "/v1/contexts/doc", "/v1/contexts/{id}", None, 200),
        ("DELETE", "/v1/contexts/doc", "/v1/contexts/{id}", None, 404),
        ("POST", "/v1/completions", "/v1/completions", {"context_id": "doc", "prompt": "x"}, 404),
        ("POST", "/v1/completions", "/v1/completions", {"prompt": "x", "temperature": -1}, 400),
        ("POST", "/v1/completions", "/v1/completions", {"prompt": story * 20}, 413),
        ("POST", "/v1/chat/completions", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400),
        ("POST", "/v1/contexts", "/v1/contexts", {"text": "x", "id": "../up"}, 400),
    ]
    for method, path, route, body, expected in calls:
        status, headers, raw = server.request(method, path, body)
        assert status == expected, f"{method} {path}: {status} {raw[:300]!r}"
        conforms(spec, route, method, status, headers, raw)
    status, headers, raw = server.request("GET", "/v1/models", key="wrong")
    conforms(spec, "/v1/models", "GET", status, headers, raw)
    assert status == 401


def test_heads_past_the_limits_get_a_documented_431(server: Server, spec: Dict[str, Any]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/v1/completions")
    for i in range(150):  # the limit is 100 fields
        conn.putheader(f"X-Field-{i}", "v")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "2")
    conn.endheaders(b"{}")
    r = conn.getresponse()
    raw = r.read()
    assert r.status == 431, raw
    conforms(spec, "/v1/completions", "POST", r.status, dict(r.headers), raw)
    assert r.headers["Connection"] == "close"
    conn.close()


def test_undeclared_methods_get_405_with_the_declared_ones(server: Server, spec: Dict[str, Any]) -> None:
    for route, item in spec["paths"].items():
        declared = {m.upper() for m in item if m.upper() in METHODS}
        if "GET" in declared:
            declared.add("HEAD")  # answered wherever GET is
        path = route.replace("{id}", "some-id")
        for method in sorted(set(METHODS) - declared):
            status, headers, raw = server.request(method, path)
            assert status == 405, f"{method} {path}: {status} {raw!r}"
            assert set(headers["Allow"].split(", ")) == declared, (method, path, headers["Allow"])
            if method != "HEAD":
                assert json.loads(raw)["error"]["code"] == 405
    # A method cpp-httplib cannot parse: 501, and the connection closes (its body is unread).
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        body = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(b"QUERY /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 501"), answer[:200]
    assert answer.count(b"HTTP/1.1") == 1, answer  # the body was not taken for a second request


def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    st = shutil.which("schemathesis")
    if st is None:
        pytest.skip("schemathesis is not installed (pip install '.[test]')")
    s = start(tmp_path)
    try:
        rss_before, fds_before = s.rss_kib(), s.open_fds()
        run = subprocess.run([st, "--config-file", str(SCHEMATHESIS_CONFIG), "run", str(SPEC_PATH), "--url", s.base,
                              "-H", f"Authorization: Bearer {KEY}", "--max-examples", "25", "--seed", "1",
                              "--workers", "1", "--no-color"],
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        assert "No issues found" in run.stdout, run.stdout[-3000:]
        # Still serving, nothing kept open, memory bounded (the fuzz runs hundreds of requests).
        assert s.proc.poll() is None
        assert s.request("GET", "/health")[0] == 200
        assert s.open_fds() <= fds_before + 2
        assert s.rss_kib() < rss_before + 64 * 1024, (rss_before, s.rss_kib())
    finally:
        s.stop()
