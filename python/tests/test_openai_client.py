"""`kvsqueeze serve` driven by the official `openai` client, as users point it at the
server: completions and chat, whole and streamed, stop strings, max_tokens, usage, the
client's own exception types for the server's errors, and kvsqueeze's fields passed
through `extra_body`. Each server runs on a free loopback port."""

from __future__ import annotations

import threading
from typing import Iterator, List

import pytest

from conftest import REPO, STORIES
from served import KEY, Server

openai = pytest.importorskip("openai")

SMOLLM2 = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def story_server() -> Iterator[Server]:
    if not STORIES.exists():
        pytest.skip(f"no {STORIES}")
    s = Server(STORIES, "--api-key", KEY, "--max-context", "256")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def chat_server() -> Iterator[Server]:
    if not SMOLLM2.exists():
        pytest.skip(f"no {SMOLLM2} (scripts/fetch_models.sh)")
    s = Server(SMOLLM2, "--api-key", KEY)
    yield s
    s.stop()


def test_completion_whole_and_streamed_agree(story_server: Server) -> None:
    c = story_server.client()
    whole = c.completions.create(model="any", prompt="Once upon a time", max_tokens=20, temperature=0)
    assert whole.object == "text_completion"
    assert len(whole.choices) == 1 and whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 20
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    pieces: List[str] = []
    for chunk in c.completions.create(model="any", prompt="Once upon a time", max_tokens=20, temperature=0, stream=True):
        pieces.extend(choice.text for choice in chunk.choices)
    assert "".join(pieces) == whole.choices[0].text != ""


def test_stop_string_and_max_tokens(story_server: Server) -> None:
    c = story_server.client()
    long = c.completions.create(model="any", prompt="Once upon a time", max_tokens=40, temperature=0).choices[0].text
    stop = long.strip().split()[3]  # a word the greedy answer reaches
    cut = c.completions.create(model="any", prompt="Once upon a time", max_tokens=40, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert stop not in cut.choices[0].text and long.startswith(cut.choices[0].text)
    short = c.completions.create(model="any", prompt="Once upon a time", max_tokens=3, temperature=0)
    assert short.usage is not None and short.usage.completion_tokens == 3


def test_kv_press_through_extra_body(story_server: Server) -> None:
    c = story_server.client()
    prompt = "Once upon a time there was a little girl named Lily. " * 3
    r = c.completions.create(model="any", prompt=prompt, max_tokens=5, temperature=0,
                             extra_body={"kv_press": {"preset": "snapkv", "budget": 16, "window": 4}})
    kv = r.model_extra["kv_cache"]
    assert kv["preset"] == "snapkv" and kv["budget"] == 16
    assert kv["bytes_after"] < kv["bytes_before"]


def test_errors_surface_as_the_clients_exceptions(story_server: Server) -> None:
    with pytest.raises(openai.AuthenticationError):
        story_server.client("wrong-key").completions.create(model="any", prompt="Hi", max_tokens=2)
    c = story_server.client()
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="any", prompt="Hi", max_tokens=2, temperature=-1)
    with pytest.raises(openai.APIStatusError) as too_long:
        c.completions.create(model="any", prompt="Once upon a time " * 200, max_tokens=2)
    assert too_long.value.status_code == 413
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="any", prompt="Hi", max_tokens=2, extra_body={"context_id": "no-such-context"})


def test_saved_context_over_http_then_asked_through_the_client(story_server: Server) -> None:
    ctx = story_server.post("/v1/contexts", {"text": "Once upon a time there was a little dog named Max.",
                                             "kv_press": {"preset": "none"}})
    assert ctx["object"] == "context" and ctx["tokens"] > 0
    question = {"prompt": " Max was", "max_tokens": 8, "temperature": 0}
    over_http = story_server.post("/v1/completions", {**question, "context_id": ctx["id"]})
    through_client = story_server.client().completions.create(model="any", extra_body={"context_id": ctx["id"]},
                                                              **question)
    assert through_client.choices[0].text == over_http["choices"][0]["text"] != ""


def test_queue_full_is_a_rate_limit_error() -> None:
    # SmolLM2, not the 260K story model: its 200 tokens take a second or two, long
    # enough to hold the only place while the second request arrives.
    if not SMOLLM2.exists():
        pytest.skip(f"no {SMOLLM2} (scripts/fetch_models.sh)")
    s = Server(SMOLLM2, "--parallel", "1", "--max-queue", "0")
    try:
        c = s.client("unused")
        started = threading.Event()

        def long_stream() -> None:
            for _ in c.completions.create(model="any", prompt="Once", max_tokens=200, stream=True, temperature=0,
                                          extra_body={"ignore_eos": True}):
                started.set()

        t = threading.Thread(target=long_stream)
        t.start()
        assert started.wait(30)
        with pytest.raises(openai.RateLimitError):
            c.completions.create(model="any", prompt="Hi", max_tokens=2)
        t.join()
    finally:
        s.stop()


def test_chat_whole_and_streamed(chat_server: Server) -> None:
    c = chat_server.client()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    whole = c.chat.completions.create(model="any", messages=messages, max_tokens=24, temperature=0)
    assert whole.object == "chat.completion"
    answer = whole.choices[0].message
    assert answer.role == "assistant" and answer.content
    assert whole.choices[0].finish_reason in ("stop", "length")
    over_http = chat_server.post("/v1/chat/completions", {"messages": messages, "max_tokens": 24, "temperature": 0})
    assert over_http["choices"][0]["message"]["content"] == answer.content
    pieces: List[str] = []
    usage = None
    for chunk in c.chat.completions.create(model="any", messages=messages, max_tokens=24, temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        pieces.extend(choice.delta.content or "" for choice in chunk.choices)
        usage = chunk.usage or usage
    assert "".join(pieces) == answer.content
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
