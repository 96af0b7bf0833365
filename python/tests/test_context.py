"""Compressed contexts: compress once, ask many times, selections, save/load, pipeline."""

from __future__ import annotations

import numpy as np
import pytest

import kvsqueeze as kvs

QUESTION = " Where did Mia find the boat?"


@pytest.fixture(scope="module")
def story_ctx(stories, long_story):
    return stories.compress(long_story["text"], kvs.SnapKVPress(budget=64))


def test_a_context_keeps_only_its_budget(story_ctx, stories, long_story):
    n = len(long_story["ids"])
    assert story_ctx.n_tokens == n
    assert not story_ctx.chat  # stories260K has no template
    assert story_ctx.bytes_uncompressed > 0
    assert story_ctx.bytes < story_ctx.bytes_uncompressed * 64 / n * 1.01
    assert story_ctx.compression == pytest.approx(story_ctx.bytes / story_ctx.bytes_uncompressed)
    budgets = story_ctx.budgets()
    assert budgets.shape == (stories.n_layer, stories.n_head_kv)
    assert (budgets == 64).all()
    sel = story_ctx.selection()
    assert len(sel) == stories.n_layer and all(len(heads) == stories.n_head_kv for heads in sel)
    for heads in sel:
        for pos in heads:
            assert pos.dtype == np.int32 and len(pos) == 64
            assert (np.diff(pos) > 0).all() and pos[0] >= 0 and pos[-1] == n - 1
            assert set(range(n - 32, n)) <= set(pos.tolist())  # the observation window is always kept
    assert "Context(" in repr(story_ctx)


def test_ada_kv_moves_budget_between_heads(stories, long_story):
    ctx = stories.compress(long_story["text"], kvs.AdaKVPress(kvs.SnapKVPress(budget=64)))
    budgets = ctx.budgets()
    assert (budgets.sum(axis=1) == 64 * stories.n_head_kv).all()  # each layer's total is kept
    assert len(np.unique(budgets)) > 1
    assert (budgets >= 32).all()  # the window, at least


def test_asking_equals_the_cli_and_repeats(story_ctx, stories_path, long_story, cli, tmp_path):
    doc = tmp_path / "story.txt"
    doc.write_text(long_story["text"])
    expected = cli.continuation("-m", stories_path, "--context", str(doc), "--question", QUESTION, "--press", "snapkv",
                                "--budget", "64", "--greedy", "-n", "24", echoed=QUESTION)
    assert story_ctx.ask(QUESTION, max_new_tokens=24) == expected
    assert story_ctx.ask(QUESTION, max_new_tokens=24) == expected  # the context is not used up
    stream = story_ctx.ask(QUESTION, max_new_tokens=24, stream=True)
    assert "".join(stream) == expected


def test_an_empty_question_continues_the_context(story_ctx, stories, long_story):
    press = kvs.SnapKVPress(budget=64)
    assert story_ctx.ask("", max_new_tokens=20) == stories.generate(long_story["text"], max_tokens=20, temperature=0,
                                                                     press=press)


def test_save_and_load_round_trip(story_ctx, stories, stories_path, long_story, cli, tmp_path):
    path = tmp_path / "story.kvc"
    story_ctx.save(path)
    loaded = stories.load_context(path)
    assert loaded.n_tokens == story_ctx.n_tokens and loaded.bytes == story_ctx.bytes
    assert (loaded.budgets() == story_ctx.budgets()).all()
    for a, b in zip(loaded.selection(), story_ctx.selection()):
        for pa, pb in zip(a, b):
            assert (pa == pb).all()
    assert loaded.ask(QUESTION, max_new_tokens=24) == story_ctx.ask(QUESTION, max_new_tokens=24)
    with pytest.raises(ValueError, match="needs a question"):
        loaded.ask("")
    # The same file as the CLI's --save-cache of the same context and press.
    doc = tmp_path / "story.txt"
    doc.write_text(long_story["text"])
    cli_path = tmp_path / "cli.kvc"
    cli.run("generate", "-m", stories_path, "--context", str(doc), "--question", QUESTION, "--press", "snapkv",
            "--budget", "64", "--greedy", "-n", "1", "--save-cache", str(cli_path))
    assert cli_path.read_bytes() == path.read_bytes()


def test_bad_saved_contexts_are_refused(story_ctx, stories, tmp_path):
    with pytest.raises(FileNotFoundError):
        stories.load_context(tmp_path / "missing.kvc")
    path = tmp_path / "story.kvc"
    story_ctx.save(path)
    truncated = tmp_path / "truncated.kvc"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises((ValueError, RuntimeError), match="truncated|short|end"):
        stories.load_context(truncated)
    other = kvs.Model(stories.path.replace("stories260K/stories260K.gguf", "retrieval-1k/retrieval.gguf"))
    with pytest.raises((ValueError, RuntimeError), match="model"):
        other.load_context(path)


def test_chat_contexts_split_one_user_turn(stories, long_story):
    ctx = stories.compress(long_story["text"], kvs.SnapKVPress(budget=64), chat=True)
    assert ctx.chat
    turn = stories.apply_chat_template([{"role": "user", "content": long_story["text"] + QUESTION}])
    head, tail = stories._engine.split_chat(long_story["text"], QUESTION)
    assert head + tail == turn and head.endswith(long_story["text"].strip()) and tail.startswith(QUESTION)
    # Each part is tokenized on its own (as kvpress and `kvsqueeze eval` do).
    assert ctx.n_tokens == len(stories.tokenize(head))
    assert stories._question_ids(QUESTION, True) == stories.tokenize(tail, add_bos=False)


def test_pipeline_answers_like_kvpress(stories, story_ctx, long_story, stories_path):
    pipe = kvs.pipeline(stories)
    press = kvs.SnapKVPress(budget=64)
    expected = story_ctx.ask(QUESTION, max_new_tokens=24)
    assert pipe(long_story["text"], question=QUESTION, press=press, max_new_tokens=24) == {"answer": expected}
    two = pipe(long_story["text"], questions=[QUESTION, " Who was Ben?"], press=press, max_new_tokens=24)
    assert two["answers"][0] == expected and len(two["answers"]) == 2
    assert kvs.pipeline(stories_path).model.path == stories.path
    with pytest.raises(ValueError, match="either question or questions"):
        pipe(long_story["text"], question="a", questions=["b"])
    with pytest.raises(ValueError, match="empty"):
        pipe("   ", question="a", chat=True)
