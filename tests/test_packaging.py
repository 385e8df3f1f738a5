"""The package as others install it: the sdist and wheel build, the wheel installs into a fresh
virtual environment outside the checkout and runs, and the sdist's own test suite works."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import spike_encode

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPIKE_ENCODE_SHARED", ROOT.parent / "shared"))


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    run = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert run.returncode == 0, f"{args} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """sdist and wheel, the wheel built from the sdist (as `python -m build` does)."""
    pytest.importorskip("build", reason="the test extra installs build")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with this environment's setuptools, no package index needed
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)])
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
    return sdist, wheel


def test_metadata_has_no_upper_caps_and_plotting_is_an_extra(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = zf.read(meta).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not [r for r in requires if "<" in r], requires
    assert [r for r in requires if r.startswith("Requires-Dist: matplotlib")] == [
        'Requires-Dist: matplotlib>=3.6; extra == "plot"']
    assert f"Version: {spike_encode.__version__}" in metadata and "License-Expression: MIT" in metadata
    assert "spike_encode/py.typed" in names and any(n.endswith("licenses/LICENSE") for n in names)
    assert not [n for n in names if n.startswith("tests/")]


def test_wheel_runs_from_a_fresh_venv_outside_the_checkout(dists, tmp_path):
    _, wheel = dists
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
          "--no-index", str(wheel)], env=env)
    # then torch & co. from this environment (not reinstalled: gigabytes); plain path lines,
    # so an editable install of the checkout found there stays inactive
    here = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "deps-from-test-env.pth").write_text("\n".join(sorted(here)) + "\n")
    where = _run([str(python), "-c", "import spike_encode; print(spike_encode.__file__)"], cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    version = _run([str(python), "-m", "spike_encode", "--version"], cwd=tmp_path, env=env)
    assert version.stdout.strip() == f"spike-encode {spike_encode.__version__}"
    script = _run([str(venv / "bin" / "spike-encode"), "--version"], cwd=tmp_path, env=env)
    assert script.stdout == version.stdout


def test_sdist_carries_a_working_test_suite(dists, tmp_path):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    for name in ("conftest.py", "loader_helpers.py", "__init__.py"):
        assert (unpacked / "tests" / name).is_file(), name
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "SPIKE_ENCODE_SHARED": str(SHARED)}
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    shipped = _run(collect, cwd=unpacked, env=env).stdout.splitlines()[-1]  # fails on collection errors
    here = _run(collect, cwd=ROOT, env=env).stdout.splitlines()[-1]
    assert shipped.split(" in ")[0] == here.split(" in ")[0], (shipped, here)  # "N tests collected"
    quick = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_formats.py",
                  "tests/test_cli.py", "-k", "version or help or user_errors or image_folder"],
                 cwd=unpacked, env=env)
    assert " passed" in quick.stdout and "skipped" not in quick.stdout, quick.stdout
