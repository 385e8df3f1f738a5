"""Every ```python block of README.md and docs/*.md runs as it stands, from the repository root.

A block is skipped only when an HTML comment ``<!-- not-run: reason -->`` stands right before
it. MNIST is read from the shared folder: ``../shared/data`` in the snippets is replaced by the
tests' data folder (``$SPIKE_ENCODE_SHARED/data`` when that is set).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DATA_ROOT

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->\s*$")


def _blocks() -> list:
    params = []
    for doc in DOCS:
        text = doc.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            skip = _NOT_RUN.search(before)
            marks = [pytest.mark.skip(reason=f"marked not-run: {skip.group(1)}")] if skip else []
            params.append(pytest.param(doc.relative_to(ROOT), line, match.group(1),
                                       id=f"{doc.name}:{line}", marks=marks))
    return params


def test_the_readme_has_runnable_snippets():
    assert len([p for p in _blocks() if not p.marks]) >= 3


@pytest.mark.parametrize("doc, line, code", _blocks())
def test_snippet_runs(doc, line, code, tmp_path, data_root):
    code = code.replace("../shared/data", str(DATA_ROOT))
    script = tmp_path / f"{doc.name}-line{line}.py"
    script.write_text(code)
    env = {**os.environ, "SPIKE_ENCODE_CACHE": str(tmp_path / "cache")}
    try:
        run = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the ```python block at {doc}:{line} ran over 300 s")
    assert run.returncode == 0, f"the ```python block at {doc}:{line} failed:\n{run.stderr[-4000:]}"
