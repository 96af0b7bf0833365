"""A short run of bench/serve_soak.py (the 30-minute one is in docs/SERVER.md): a mix of
whole and streamed requests, hang-ups, saved contexts and bad requests against one
server, with no 5xx, no unexpected answer and no growth of descriptors or memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, STORIES, cli_path


def test_a_short_soak_passes() -> None:
    cli = cli_path()
    if cli is None or not STORIES.exists():
        pytest.skip("needs the kvsqueeze CLI and stories260K")
    run = subprocess.run([sys.executable, str(REPO / "bench" / "serve_soak.py"), "--cli", cli, "--model", str(STORIES),
                          "--seconds", "20", "--clients", "4", "--sample-every", "2"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "soak passed" in run.stdout
    requests = int(next(line.split()[1] for line in run.stdout.splitlines() if line.startswith("requests:")))
    assert requests > 50, run.stdout
