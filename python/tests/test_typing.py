"""The installed package type-checks strictly: its modules, the generated _core.pyi, and
code written against them."""

from __future__ import annotations

import subprocess
import sys

import pytest

USE = '''
import numpy as np
import kvsqueeze as kvs
m = kvs.Model("smollm2-135m-instruct", threads=2)
ids: list[int] = m.tokenize("a")
text: str = m.detokenize(ids)
press = kvs.AdaKVPress(kvs.SnapKVPress(compression_ratio=0.5))
ctx = m.compress("doc", press)
n: int = ctx.bytes
sel: list[list[np.ndarray]] = ctx.selection()
answer = kvs.pipeline(m)("c", question="q", press=press)["answer"]
records: list[dict[str, object]] = kvs.eval.run("niah", m, budgets=[64])
logits: np.ndarray = m.logits(ids)
'''


def test_the_package_and_its_users_type_check(tmp_path):
    pytest.importorskip("mypy")
    (tmp_path / "use.py").write_text(USE)
    for target in (["-p", "kvsqueeze"], [str(tmp_path / "use.py")]):
        p = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", *target], cwd=tmp_path,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
