"""Model: loading, tokens, generation (whole and streamed), logits, chat, threads, errors."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import kvsqueeze as kvs
from conftest import REFERENCE


def test_model_describes_itself(stories):
    assert stories.architecture == "llama"
    assert (stories.n_layer, stories.n_head, stories.n_head_kv, stories.n_vocab) == (5, 8, 4, 512)
    assert stories.n_ctx == 512
    assert stories.kv_type == "f16"
    assert stories.threads == 2
    assert not stories.has_chat_template
    assert "stories260K" in repr(stories)


def test_tokenize_gives_the_reference_ids_and_detokenize_inverts_it(stories, greedy_reference):
    for case in greedy_reference:
        ids = stories.tokenize(case["prompt"])
        assert ids == case["prompt_ids"]
        assert stories.detokenize(ids).strip() == case["prompt"]
    assert stories.tokenize("Once", add_bos=False) == stories.tokenize("Once")[1:]


def test_tokenize_matches_the_cli(stories, stories_path, cli):
    text = "Lily and Ben saw a big dog. It was happy!"
    assert json.loads(cli.run("tokenize", "-m", stories_path, "-p", text).stdout) == stories.tokenize(text)
    assert json.loads(cli.run("tokenize", "-m", stories_path, "-p", text, "--no-bos").stdout) == \
        stories.tokenize(text, add_bos=False)


def test_greedy_generation_gives_the_reference_tokens(stories, greedy_reference):
    for case in greedy_reference:
        n = len(case["greedy_ids"])
        stream = stories.generate(case["prompt_ids"], max_tokens=n, temperature=0, ignore_eos=True, stream=True)
        text = stream.read()
        assert stream.token_ids == case["greedy_ids"]
        assert text == stories.detokenize(case["greedy_ids"])
        assert stream.finish_reason == "length"


def test_generation_equals_the_cli(stories, stories_path, cli):
    prompt = "Once upon a time, there was a little dog"
    expected = cli.continuation("-m", stories_path, "-p", prompt, "--greedy", "-n", "40", "-t", "2", echoed=prompt)
    assert stories.generate(prompt, max_tokens=40, temperature=0) == expected
    # Sampling with a seed is reproducible and the same as the CLI's.
    sampled = cli.continuation("-m", stories_path, "-p", prompt, "--temp", "0.9", "--seed", "7", "-n", "30", echoed=prompt)
    assert stories.generate(prompt, max_tokens=30, temperature=0.9, seed=7) == sampled
    assert stories.generate(prompt, max_tokens=30, temperature=0.9, seed=8) != sampled


def test_stream_pieces_add_up_to_the_whole_text(stories):
    whole = stories.generate("Once upon a time", max_tokens=48, temperature=0)
    stream = stories.generate("Once upon a time", max_tokens=48, temperature=0, stream=True)
    pieces = list(stream)
    assert len(pieces) > 10 and all(pieces)
    assert "".join(pieces) == whole == stream.text
    stats = stream.stats
    assert stats["prompt_tokens"] == 5 and stats["generated_tokens"] == len(stream.token_ids)
    assert stats["decode_passes"] == stats["generated_tokens"] - 1
    assert stats["kv_bytes"] > stats["kv_bytes_after_prompt"] > 0


def test_stop_strings_end_the_text_before_them(stories):
    whole = stories.generate("Once upon a time", max_tokens=48, temperature=0)
    assert "Lily" in whole
    cut = stories.generate("Once upon a time", max_tokens=48, temperature=0, stop=["Lily"], stream=True)
    assert cut.read() == whole[: whole.index("Lily")]
    assert cut.finish_reason == "stop"
    assert len(cut.token_ids) < 48


def test_end_of_generation_stops_unless_ignored(stories):
    # stories260K ends a story with </s> (id 2) soon after "The end."-like text.
    stream = stories.generate("Once upon a time", max_tokens=400, temperature=0, stream=True)
    stream.read()
    eos_stop = stream.token_ids[-1] == 2
    assert stream.finish_reason == ("stop" if eos_stop else "length")
    if eos_stop:
        longer = stories.generate("Once upon a time", max_tokens=len(stream.token_ids) + 5, temperature=0,
                                  ignore_eos=True, stream=True)
        longer.read()
        assert len(longer.token_ids) == len(stream.token_ids) + 5


def test_max_tokens_zero_generates_nothing(stories):
    assert stories.generate("Once upon a time", max_tokens=0) == ""


def test_logits_are_within_tolerance_of_the_reference(stories, long_story):
    ids = long_story["ids"]
    got = stories.logits(ids)
    assert got.shape == (len(ids), 512) and got.dtype == np.float32
    ref = np.fromfile(REFERENCE / long_story["file"], dtype="<f4").reshape(len(ids), 512)
    worst = np.abs(got - ref).max(axis=1)
    assert worst.mean() < 0.02 and worst.max() < 0.08  # the C++ suite's bounds
    assert (got.argmax(axis=1) == ref.argmax(axis=1)).all()


def test_logits_with_compression_match_the_cli(stories, stories_path, long_story, cli, tmp_path):
    ids = long_story["ids"]
    press = kvs.SnapKVPress(budget=64)
    got = stories.logits(ids, compress_at=300, press=press)
    out = tmp_path / "logits.f32"
    cli.run("logits", "-m", stories_path, "--ids", ",".join(map(str, ids)), "--compress-at", "300",
            "--press", "snapkv", "--budget", "64", "--out", str(out), "-t", "2")
    expected = np.fromfile(out, dtype="<f4").reshape(got.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    full = stories.logits(ids)
    np.testing.assert_allclose(got[:300], full[:300], rtol=0, atol=1e-4)  # before the press acts
    assert np.abs(got[300:] - full[300:]).max() > 1e-3  # after it, the evicted rows are missed


def test_chat_renders_the_models_template(stories):
    # stories260K has no template: kvsqueeze falls back to ChatML, as llama.cpp does.
    text = stories.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    reply = stories.chat([{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0)
    assert reply == stories.generate(text, max_tokens=8, temperature=0)
    with pytest.raises(ValueError, match="role"):
        stories.chat([{"role": "robot", "content": "Hi"}])
    with pytest.raises(ValueError, match="'role' and 'content'"):
        stories.chat([{"text": "Hi"}])


def test_concurrent_generations_from_threads_match_serial_ones(stories):
    prompts = ["Once upon a time", "Lily saw a", "The dog", "Ben was sad"]
    serial = [stories.generate(p, max_tokens=32, temperature=0) for p in prompts]
    results = [None] * len(prompts)

    def work(i: int) -> None:
        results[i] = stories.generate(prompts[i], max_tokens=32, temperature=0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial


def test_ctrl_c_stops_a_generation_between_tokens(stories):
    stream = stories.generate("Once upon a time", max_tokens=100000, temperature=0.8, ignore_eos=True, stream=True)
    # Python turns SIGINT into KeyboardInterrupt only if it was not ignored at start-up, and a
    # shell starts background jobs with it ignored: put Python's handler in place, as in a
    # terminal. Sent to the process, as a terminal's Ctrl-C is.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            for _ in stream:
                if time.monotonic() - started > 10:
                    break  # no interrupt came: fail now rather than after every token
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 10
    done = len(stream.token_ids)
    assert 0 < done < 100000
    next(stream)  # the generation can go on afterwards
    assert len(stream.token_ids) > done


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.generate([0, 99999]), "outside the vocabulary"),
        (lambda m: m.generate([]), "tokenizes to nothing"),
        (lambda m: m.generate("hi", max_tokens=-1), "max_tokens"),
        (lambda m: m.generate("hi", top_p=0), "top_p"),
        (lambda m: m.generate("hi", temperature=-1), "temperature"),
        (lambda m: m.generate("hi", stop=[""]), "stop string"),
        (lambda m: m.logits([]), "no token ids"),
        (lambda m: m.logits([1, 2, 3], compress_at=4), "compress_at"),
        (lambda m: m.logits([1, 2, 3], press=kvs.SnapKVPress(budget=32)), "compress_at"),
        (lambda m: m.detokenize([-1]), "outside the vocabulary"),
        (lambda m: m.generate("hi", press="snapkv"), "press must be"),
        (lambda m: m.generate("hi", compress_every=0), "compress_every"),
    ],
)
def test_bad_input_raises_one_clear_error(stories, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(stories)


def test_bad_models_are_refused(tmp_path, stories_path):
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        kvs.Model("no-such-model")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(Path(stories_path).read_bytes()[:5000])
    with pytest.raises((ValueError, RuntimeError), match="truncated|past the end|too short|short"):
        kvs.Model(str(truncated))
    not_gguf = tmp_path / "text.gguf"
    not_gguf.write_text("hello, not a model")
    with pytest.raises((ValueError, RuntimeError), match="GGUF|magic"):
        kvs.Model(str(not_gguf))
    with pytest.raises(ValueError, match="KV cache type"):
        kvs.Model(stories_path, kv_type="f8")
    with pytest.raises(ValueError, match="threads"):
        kvs.Model(stories_path, threads=0)


def test_kv_types_change_the_cache_bytes(stories_path):
    sizes = {}
    for kv_type in ("f32", "f16"):
        m = kvs.Model(stories_path, threads=1, kv_type=kv_type)
        assert m.kv_type == kv_type
        s = m.generate("Once upon a time", max_tokens=4, temperature=0, stream=True)
        s.read()
        sizes[kv_type] = s.stats["kv_bytes_after_prompt"]
    assert sizes["f32"] > sizes["f16"] > 0
    # A press without a kv_type of its own keeps the model's; one with it uses its own.
    prompt = "Once upon a time there was a girl named Lily who liked to play outside with her ball"
    for kv_type, press in (("f32", kvs.SnapKVPress(budget=40)), ("f16", kvs.SnapKVPress(budget=40)),
                           ("f16", kvs.SnapKVPress(budget=40, kv_type="f32"))):
        m = kvs.Model(stories_path, threads=1, kv_type=kv_type)
        s = m.generate(prompt, max_tokens=2, temperature=0, press=press, stream=True)
        s.read()
        sizes[(kv_type, press.kv_type)] = s.stats["kv_bytes_after_prompt"]
        assert m.compress(prompt, press).bytes == sizes[(kv_type, press.kv_type)]
    assert sizes[("f32", None)] == sizes[("f16", "f32")] > sizes[("f16", None)]
    # q8_0 blocks are 32 wide: a model with 8-wide heads is refused when it is opened.
    with pytest.raises(ValueError, match="multiples of 32"):
        kvs.Model(stories_path, kv_type="q8_0")
