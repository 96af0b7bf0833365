"""Fixtures of the Python suite: the shared models (../shared), the real ones when
fetched (models/), and the CLI of the same build to compare against."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional

import pytest

import kvsqueeze as kvs

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("KVSQUEEZE_SHARED", REPO.parent / "shared"))
STORIES = SHARED / "models" / "stories260K" / "stories260K.gguf"
REFERENCE = SHARED / "reference" / "stories260K"


def cli_path() -> Optional[str]:
    """The kvsqueeze CLI: $KVSQUEEZE_CLI, the one the wheel installed, or the release build."""
    for candidate in (os.environ.get("KVSQUEEZE_CLI"), shutil.which("kvsqueeze"), str(REPO / "build/release/src/kvsqueeze")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class Cli:
    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([self.path, *args], capture_output=True, text=True, timeout=600)
        if check and p.returncode != 0:
            raise AssertionError(f"kvsqueeze {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def error(self, *args: str) -> str:
        """The message of a command that must fail ("error: ..." on stderr)."""
        p = self.run(*args, check=False)
        assert p.returncode != 0, f"kvsqueeze {' '.join(args)} should have failed"
        line = p.stderr.strip().splitlines()[-1]
        assert line.startswith("error: "), p.stderr
        return line[len("error: "):]

    def continuation(self, *args: str, echoed: str) -> str:
        """What `generate` wrote after echoing its prompt (or question)."""
        out = self.run("generate", *args).stdout
        assert out.startswith(echoed) and out.endswith("\n"), out
        return out[len(echoed):-1]


@pytest.fixture(scope="session")
def cli() -> Cli:
    path = cli_path()
    if path is None:
        pytest.skip("no kvsqueeze CLI to compare with (build/release/kvsqueeze or the wheel's)")
    return Cli(path)


@pytest.fixture(scope="session")
def stories_path() -> str:
    if not STORIES.exists():
        pytest.skip(f"fixture {STORIES} not found")
    return str(STORIES)


@pytest.fixture(scope="session")
def stories(stories_path: str) -> kvs.Model:
    return kvs.Model(stories_path, threads=2)


@pytest.fixture(scope="session")
def greedy_reference() -> List[dict]:
    path = REFERENCE / "greedy.jsonl"
    if not path.exists():
        pytest.skip(f"fixture {path} not found")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def long_story() -> dict:
    """A ~400-token story with its ids and reference logits (llama.cpp's)."""
    path = REFERENCE / "logits_long.json"
    if not path.exists():
        pytest.skip(f"fixture {path} not found")
    return json.loads(path.read_text())


def real_model(name: str) -> kvs.Model:
    try:
        return kvs.Model(name, threads=2)
    except FileNotFoundError as e:
        pytest.skip(f"real model {name} not fetched (scripts/fetch_models.sh): {e}")


@pytest.fixture(scope="session")
def smollm2() -> kvs.Model:
    return real_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma3() -> kvs.Model:
    return real_model("gemma3-270m")
