"""ruff, configured in pyproject.toml ([tool.ruff]: line length 120, pycodestyle, pyflakes, bugbear, pyupgrade), finds
nothing in pydarknet/, tests/ or tools/bench/ (the benches the Makefile runs)."""
import shutil
import subprocess

import pytest

from conftest import ROOT


def ruff():
    """The ruff command of the test extra: its module under this Python, else one on the PATH."""
    try:
        import ruff as module
        return [module.find_ruff_bin()]
    except ImportError:
        found = shutil.which("ruff")
        if found is None:
            pytest.skip("ruff is not installed (the test extra has it: pip install -e '.[test]')")
        return [found]


def test_ruff_finds_nothing():
    proc = subprocess.run([*ruff(), "check", "--no-cache", "pydarknet", "tests", "tools/bench"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
