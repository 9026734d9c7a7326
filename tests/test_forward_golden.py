"""Every golden forward case: each stored layer output, computed from darknet's own input.npy."""
from pathlib import Path

import pytest

from conftest import DATA, SHARED
from golden import layer_mismatch, run_case

SHARED_CASES = sorted(p for p in (SHARED / "golden" / "forward").glob("*") if p.is_dir()) \
    if (SHARED / "golden" / "forward").is_dir() else []
LOCAL_CASES = sorted(p for p in (DATA / "forward").glob("*") if p.is_dir())


# Darknet's [crop] in vgg16_slim cuts 224x224 out of a 96x96 input without a bounds check: it read memory past
# the end of its input buffer (whatever the golden generator had allocated there), which no re-implementation
# can reproduce. Every layer after it matches when fed darknet's own crop output (test_vgg16_after_crop).
UNREPRODUCIBLE = {"vgg16_slim": "darknet's crop read 6208 floats past its 96x96 input (undefined memory)"}


def case_param(case_dir):
    reason = UNREPRODUCIBLE.get(case_dir.name)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(case_dir, id=case_dir.name, marks=marks)


@pytest.mark.parametrize("case_dir", [case_param(p) for p in SHARED_CASES])
def test_shared_case_layers(case_dir):
    net, _ = run_case(case_dir, SHARED)
    assert layer_mismatch(net, case_dir) is None, layer_mismatch(net, case_dir)


@pytest.mark.parametrize("case_dir", LOCAL_CASES, ids=lambda p: p.name)
def test_local_case_layers(case_dir):
    net, _ = run_case(case_dir, DATA)
    assert layer_mismatch(net, case_dir) is None, layer_mismatch(net, case_dir)


def test_shared_cases_present():
    if not SHARED_CASES:
        pytest.skip("needs ../shared/golden/forward (the shared reference data is not beside the project)")
    assert len(SHARED_CASES) >= 23
