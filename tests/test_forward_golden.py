"""Every golden forward case: each stored layer output, computed from darknet's own input.npy."""
from pathlib import Path

import pytest

from conftest import DATA, SHARED
from golden import case_param, layer_mismatch, run_case
from pydarknet.kernels import products

SHARED_CASES = sorted(p for p in (SHARED / "golden" / "forward").glob("*") if p.is_dir()) \
    if (SHARED / "golden" / "forward").is_dir() else []
LOCAL_CASES = sorted(p for p in (DATA / "forward").glob("*") if p.is_dir())


@pytest.mark.parametrize("case_dir", [case_param(p) for p in SHARED_CASES])
def test_shared_case_layers(case_dir):
    net, _ = run_case(case_dir, SHARED)
    assert layer_mismatch(net, case_dir) is None, layer_mismatch(net, case_dir)
    if products.backend() == "darknet":  # darknet's summation order for the products: bit for bit
        assert layer_mismatch(net, case_dir, tolerance=0) is None, layer_mismatch(net, case_dir, tolerance=0)


@pytest.mark.parametrize("case_dir", LOCAL_CASES, ids=lambda p: p.name)
def test_local_case_layers(case_dir):
    net, _ = run_case(case_dir, DATA)
    assert layer_mismatch(net, case_dir) is None, layer_mismatch(net, case_dir)


def test_shared_cases_present():
    if not SHARED_CASES:
        pytest.skip("needs ../shared/golden/forward (the shared reference data is not beside the project)")
    assert len(SHARED_CASES) >= 23
