"""Every golden forward case: each stored layer output, computed from darknet's own input.npy with darknet's
exact-order products (whatever PYDARKNET_PRODUCTS says), is darknet's bit for bit (README, Darknet's numbers)."""
import pytest

from conftest import DATA, SHARED
from golden import EXACT, case_param, layer_mismatch, or_skip, run_case

SHARED_CASES = sorted(p for p in (SHARED / "golden" / "forward").glob("*") if p.is_dir()) \
    if (SHARED / "golden" / "forward").is_dir() else []
LOCAL_CASES = sorted(p for p in (DATA / "forward").glob("*") if p.is_dir())


@pytest.mark.parametrize("case_dir", or_skip([case_param(p) for p in SHARED_CASES], "golden/forward"))
def test_shared_case_layers(case_dir, darknet_products):
    net, _ = run_case(case_dir, SHARED)
    assert layer_mismatch(net, case_dir, EXACT) is None, layer_mismatch(net, case_dir, EXACT)


@pytest.mark.parametrize("case_dir", LOCAL_CASES, ids=lambda p: p.name)
def test_local_case_layers(case_dir, darknet_products):
    net, _ = run_case(case_dir, DATA)
    assert layer_mismatch(net, case_dir, EXACT) is None, layer_mismatch(net, case_dir, EXACT)


def test_shared_cases_present():
    if not SHARED_CASES:
        pytest.skip("needs ../shared/golden/forward (the shared reference data is not beside the project)")
    assert len(SHARED_CASES) >= 23
