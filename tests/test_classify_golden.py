"""Classifier golden cases: the top 10 darknet printed (dets.txt: class index, probability to 6 decimals),
from our forward pass on darknet's input.npy (darknet's bits, so the printing's rounding is the whole difference)
and from darknet's own stored output."""
import json

import numpy as np
import pytest

from conftest import DATA, SHARED
from golden import EXACT, PRINTED, or_skip, read_dets, run_case
from pydarknet.results.classifications import top_k



def classifier_cases(root):
    base = root / "golden" / "forward" if root == SHARED else root / "forward"
    if not base.is_dir():
        return []
    cases = []
    for case in sorted(p for p in base.iterdir() if (p / "dets.txt").is_file()):
        rows = read_dets(case)
        if rows and all(len(r) == 2 for r in rows):
            cases.append(case)
    return cases


SHARED_CASES = classifier_cases(SHARED)
LOCAL_CASES = classifier_cases(DATA)

# Darknet's [crop] in vgg16_slim cuts 224x224 out of a 96x96 input: its unchecked index arithmetic reads
# 6208 floats past the end of the input buffer (another heap block), which no input.npy can reproduce.
NOT_REPRODUCIBLE = {"vgg16_slim": "darknet's crop read memory past its 96x96 input (see test_vgg16_after_crop)"}


def check_top(probabilities, case_dir, tolerance):
    expected = read_dets(case_dir)
    ours = top_k(probabilities, len(expected))
    assert [i for i, _ in ours] == [int(r[0]) for r in expected], (ours, expected)
    worst = max(abs(p - r[1]) for (_, p), r in zip(ours, expected))
    assert worst <= tolerance, f"probability off by {worst:.3g} (tolerance {tolerance:g})"


def shared_params():
    return [pytest.param(c, id=c.name, marks=pytest.mark.xfail(reason=NOT_REPRODUCIBLE[c.name], strict=True))
            if c.name in NOT_REPRODUCIBLE else pytest.param(c, id=c.name) for c in SHARED_CASES]


@pytest.mark.parametrize("case_dir", or_skip(shared_params(), "golden/forward"))
def test_shared_classifier_top10(case_dir, darknet_products):
    net, _ = run_case(case_dir, SHARED)
    check_top(net.output_layer.output[0].reshape(-1), case_dir, PRINTED)


@pytest.mark.parametrize("case_dir", LOCAL_CASES, ids=lambda p: p.name)
def test_local_classifier_top10(case_dir, darknet_products):
    net, _ = run_case(case_dir, DATA)
    check_top(net.output_layer.output[0].reshape(-1), case_dir, PRINTED)


@pytest.mark.parametrize("case_dir", SHARED_CASES + LOCAL_CASES, ids=lambda p: f"{p.parent.parent.name}-{p.name}")
def test_top_k_on_darknet_output(case_dir):
    """top_k on darknet's own stored output gives its printed list (ranks exactly, values to the print)."""
    last = json.loads((case_dir / "layers.json").read_text())[-1]
    assert "file" in last, "every classifier case stores its last layer's output"
    check_top(np.load(case_dir / last["file"]).reshape(-1), case_dir, PRINTED)


def test_vgg16_after_crop(darknet_products):
    """vgg16_slim from darknet's own crop output on: every later layer bit for bit, and the top 10."""
    case_dir = SHARED / "golden" / "forward" / "vgg16_slim"
    if not case_dir.is_dir():
        pytest.skip("needs ../shared/golden/forward/vgg16_slim")
    net, _ = run_case(case_dir, SHARED)
    x = np.load(case_dir / "out_000.npy").reshape((1,) + net.layers[0].out_shape).astype(np.float32)
    for layer in net.layers[1:]:
        x = layer.forward(np.ascontiguousarray(x), net)
        layer.output = x
        ref = np.load(case_dir / f"out_{layer.index:03d}.npy")
        err = np.abs(x[0].reshape(ref.shape).astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref))
        assert err.max() <= EXACT, f"layer {layer.index} ({layer.type}): scaled error {err.max():.3g}"
    check_top(net.output_layer.output[0].reshape(-1), case_dir, PRINTED)


def test_cases_present():
    if not SHARED_CASES:
        pytest.skip("needs ../shared/golden/forward")
    assert {"tiny_dog", "alexnet_slim", "vgg16_slim", "darknet53_slim"} <= {c.name for c in SHARED_CASES}
