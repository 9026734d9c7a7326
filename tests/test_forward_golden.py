"""Every golden forward case: each stored layer output, computed from darknet's own input.npy with darknet's
exact-order products (whatever PYDARKNET_PRODUCTS says), is darknet's bit for bit (README, Darknet's numbers)."""
import json

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


@pytest.mark.parametrize("case_dir", or_skip([case_param(p) for p in SHARED_CASES], "golden/forward"))
def test_shared_case_outputs_through_the_memory_plan(case_dir, darknet_products):
    """The same cases in a pass whose memory is planned as a user's is (network/outputs.py: outputs sharing arrays,
    plain residuals added in place, by the convolution before where its pass finishes the output): the outputs the
    caller reads (the network's output layer, its detection layers) are darknet's bit for bit."""
    net, _ = run_case(case_dir, SHARED, every_output=False)
    read = {net.output_layer.index} | {layer.index for layer in net.layers if layer.type in ("yolo", "region",
                                                                                            "detection")}
    stored = {entry["index"] for entry in json.loads((case_dir / "layers.json").read_text()) if "file" in entry}
    assert read <= stored   # every output read is compared
    assert layer_mismatch(net, case_dir, EXACT, only=read) is None, layer_mismatch(net, case_dir, EXACT, only=read)


@pytest.mark.parametrize("case_dir", LOCAL_CASES, ids=lambda p: p.name)
def test_local_case_layers(case_dir, darknet_products):
    net, _ = run_case(case_dir, DATA)
    assert layer_mismatch(net, case_dir, EXACT) is None, layer_mismatch(net, case_dir, EXACT)


def test_shared_cases_present():
    if not SHARED_CASES:
        pytest.skip("needs ../shared/golden/forward (the shared reference data is not beside the project)")
    assert len(SHARED_CASES) >= 23
