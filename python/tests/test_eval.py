"""kvsqueeze.eval.run: the harness's records, as the CLI writes them."""

from __future__ import annotations

import json

import pytest

import kvsqueeze as kvs

VOLATILE = {"seconds", "prompt_seconds", "press_seconds", "wall_seconds", "decode_seconds", "tokens_per_second",
            "peak_rss_mib", "time", "date"}


def stable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in VOLATILE and "second" not in k and "rss" not in k}


def test_eval_run_returns_the_clis_records(stories_path, cli, tmp_path):
    args = dict(presets=["snapkv", "ada-snapkv"], budgets=[48, 96], prompt_tokens=300, continuation=32)
    records = kvs.eval.run("fidelity", stories_path, threads=2, **args)
    out = tmp_path / "cli.jsonl"
    cli.run("eval", "fidelity", "-m", stories_path, "--presets", "snapkv,ada-snapkv", "--budgets", "48,96",
            "--prompt-tokens", "300", "--continuation", "32", "--out", str(out), "--no-progress", "-t", "2")
    expected = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(expected) == 5  # none, then two presets at two budgets
    assert [stable(r) for r in records] == [stable(r) for r in expected]
    full = [r for r in records if r["preset"] == "none"]
    assert len(full) == 1


def test_eval_run_resumes_a_results_file(stories_path, tmp_path):
    out = tmp_path / "results.jsonl"
    first = kvs.eval.run("ppl", stories_path, presets=["knorm"], budgets=[64], prompt_tokens=200, continuation=16,
                         out=out)
    lines = out.read_text().splitlines()
    again = kvs.eval.run("ppl", stories_path, presets=["knorm"], budgets=[64], prompt_tokens=200, continuation=16,
                         out=out)
    assert out.read_text().splitlines() == lines  # nothing ran twice
    assert [stable(r) for r in again] == [stable(r) for r in first]


def test_eval_run_refuses_bad_options(stories_path):
    with pytest.raises(ValueError, match="task"):
        kvs.eval.run("quiz", stories_path, budgets=[64])
    with pytest.raises(ValueError, match="budget"):
        kvs.eval.run("fidelity", stories_path, presets=["snapkv"], budgets=[8])
    with pytest.raises(ValueError, match="--pool"):
        kvs.eval.run("fidelity", stories_path, budgets=[64], pooling="median")
