"""examples/train_snn.py and examples/tutorial.py, run as commands: a user error is one line
on stderr and exit status 2, never a traceback, and leaves what is on disk alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DATA_ROOT

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _fails_in_one_line(script: str, *args: str) -> str:
    """Runs ``examples/<script> args``; asserts exit status 2 and a one-line error; returns it."""
    run = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), run.stderr
    return lines[0]


@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_train_snn_no_epochs_leaves_the_results_alone(tmp_path, epochs):
    out = tmp_path / "train_snn_torch.json"
    out.write_text('{"test_accuracy": 0.97}\n')
    error = _fails_in_one_line("train_snn.py", "--data-root", str(DATA_ROOT), "--epochs", epochs,
                               "--train-subset", "8", "--test-subset", "8", "--num-workers", "0",
                               "--no-progress", "--out", str(out))
    assert "--epochs" in error
    assert out.read_text() == '{"test_accuracy": 0.97}\n'


@pytest.mark.parametrize("option, value", [("--batch-size", "-1"), ("--num-workers", "-1"),
                                           ("--train-subset", "-5"), ("--lr", "-1"), ("--lr", "nan")])
def test_train_snn_rejects_bad_numbers(tmp_path, option, value):
    error = _fails_in_one_line("train_snn.py", "--data-root", str(tmp_path), option, value)
    assert option in error


def test_train_snn_missing_data_root(tmp_path):
    error = _fails_in_one_line("train_snn.py", "--data-root", str(tmp_path / "nope"),
                               "--out", str(tmp_path / "result.json"))
    assert "MNIST" in error
    assert list(tmp_path.iterdir()) == []


def test_train_snn_checks_out_before_loading_data(tmp_path):
    # the data root is missing too: the --out error comes first, so before any work
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    error = _fails_in_one_line("train_snn.py", "--data-root", str(tmp_path / "nope"),
                               "--out", str(blocker / "sub" / "result.json"))
    assert "--out" in error
    assert list(tmp_path.iterdir()) == [blocker]
    assert "--out" in _fails_in_one_line("train_snn.py", "--out", str(tmp_path))  # a folder


def test_train_snn_help_states_each_default_once():
    run = subprocess.run([sys.executable, str(EXAMPLES / "train_snn.py"), "--help"],
                         capture_output=True, text=True, timeout=300, check=True)
    text = " ".join(run.stdout.split())
    assert "(default: None)" not in text
    assert text.count("(default: $SPIKE_ENCODE_DATA or ./data)") == 1
    assert "DataLoader workers (image loading) (default: 2)" in text  # others still show


def test_tutorial_missing_data_root(tmp_path):
    assert "MNIST" in _fails_in_one_line("tutorial.py", "--data-root", str(tmp_path / "nope"),
                                         "--out", str(tmp_path / "plot.png"))


def test_tutorial_unwritable_out(data_root, tmp_path):
    assert str(tmp_path) in _fails_in_one_line("tutorial.py", "--data-root", str(data_root),
                                               "--out", str(tmp_path))
