"""Training against the AlexeyAB fork with its GPU semantics: the golden cases of ../shared/golden/train_ab (8 calls
of the fork's train_network on one batch of 4 shapes images, from before.weights with seen = 0), with darknet's
exact-order products.

Required (issue 15): per-step loss within 1e-3 relative and every weight within 1e-4 * max(1, |theirs|) after 8
steps. The CIoU and mish cases turn a single differing last bit into percent-level drift within a few steps, so
meeting these needs the fork's -Ofast arithmetic exactly: its float activate() in the convolution (logistic in
float, not pjreddie's double), dx_box_iou, box_ciou/box_giou and the MSE box delta as GCC regroups them, the
logistic gradient's product order, and the vectorised reciprocals of logistic/swish/mish as Intel CPUs compute
rcpps (the goldens come from an Intel Xeon; AMD's rcpps differs in the last bits, and the fork built here on AMD
drifts from them exactly as far as pydarknet did when it used the host's instruction).

Asserted: yolov4-tiny_train, yolov7-tiny_train and yolov4_train bit for bit (every loss as printed, after.weights
byte for byte, its 0.2.5 header included); ab_ops_train's first loss as printed, the others within 1e-5 relative
(measured 3.4e-6) and its weights within 1e-5 scaled (measured 9.1e-6): what is left there is the weighted
shortcut's backward, whose -Ofast order is not pinned.
"""
import math

import numpy as np
import pytest

from conftest import shared_path
from pydarknet.files.weights import weights_bytes
from pydarknet.kernels.activations import rcp_intel
from pydarknet.network.network import Network
from pydarknet.tasks.train.step import train_network
from test_train_golden import printed_losses, weight_errors

CASES = ["ab_ops_train", "yolov4-tiny_train", "yolov7-tiny_train", "yolov4_train"]
NOT_BIT_EXACT = {"ab_ops_train": 1e-5}   # loss (relative) and weight (scaled) tolerance where bits are not pinned


def run_case(case_dir, steps=8):
    net = Network(case_dir / "net.cfg", quiet_unused=True)
    net.load(case_dir / "before.weights")
    net.seen = 0
    net.quiet = True
    assert net.darknet == "ab"
    x, y = np.load(case_dir / "x.npy"), np.load(case_dir / "y.npy")
    return net, [float(train_network(net, x, y)) for _ in range(steps)]


@pytest.mark.parametrize("case", CASES)
def test_golden_training_ab(case, darknet_products):
    case_dir = shared_path("golden", "train_ab", case)
    want = printed_losses(case_dir)
    net, losses = run_case(case_dir, len(want))
    printed = [f"{loss:.8f}" for loss in losses]
    if case not in NOT_BIT_EXACT:
        assert printed == want
        assert weights_bytes(net) == (case_dir / "after.weights").read_bytes()
        return
    tolerance = NOT_BIT_EXACT[case]
    assert printed[0] == want[0]
    err = [abs(a - float(b)) / abs(float(b)) for a, b in zip(losses, want)]
    assert max(err) <= tolerance, "relative loss errors " + ", ".join(f"{e:.2g}" for e in err)
    assert weight_errors(net, case_dir).max() <= tolerance


def test_ab_stats_line(darknet_products, capsys):
    """The fork's per-layer statistics line, as darknet_stderr.txt shows it for step 0 (pydarknet's floats, so
    the last printed digit may differ by one)."""
    case_dir = shared_path("golden", "train_ab", "yolov4-tiny_train")
    net = Network(case_dir / "net.cfg", quiet_unused=True)
    net.load(case_dir / "before.weights")
    train_network(net, np.load(case_dir / "x.npy"), np.load(case_dir / "y.npy"))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("v3 ")]
    theirs = [line for line in (case_dir / "darknet_stderr.txt").read_text().splitlines()
              if line.startswith("v3 ")][:2]
    assert len(lines) == 2
    for ours, want in zip(lines, theirs):
        assert ours.split("class_loss")[0] == want.split("class_loss")[0]
        got = [float(v.split("=")[1]) for v in ours.split(", ")[-3:]]
        exp = [float(v.split("=")[1]) for v in want.split(", ")[-3:]]
        assert np.allclose(got, exp, rtol=1e-6, atol=2e-5)


def test_rcp_intel_values():
    """Intel's rcpps: 1.0 gives 0x3F7FF000 (0.999756, as documented for Intel CPUs); the result has 12
    significant bits and stays within the documented 1.5 * 2^-12 relative error over every table interval
    (both of its ends, at several exponents and both signs); the special values."""
    f32 = np.float32
    assert f32(rcp_intel(f32(1.0))).view(np.uint32) == 0x3F7FF000
    assert rcp_intel(f32(2.0)) == rcp_intel(f32(1.0)) / 2
    ends = 1.0 + np.concatenate([np.arange(2048), np.arange(1, 2049) - 2.0 ** -23 * 2048]) / 2048.0
    for scale in (2.0 ** -100, 0.75, 1.0, 3.0, 2.0 ** 100):
        for sign in (1.0, -1.0):
            x = (sign * ends * scale).astype(f32)
            r = np.array([rcp_intel(v) for v in x], f32)
            assert np.all(np.abs(r.astype(np.float64) * x - 1.0) <= 1.5 * 2.0 ** -12)
            assert np.all(np.sign(r) == sign)
            assert np.all(r.view(np.uint32) & 0x7FF == 0)    # 12 significant bits
    assert rcp_intel(f32(0.0)) == math.inf and rcp_intel(f32(-0.0)) == -math.inf
    assert rcp_intel(f32(1e-40)) == math.inf              # denormal: as zero
    assert rcp_intel(f32(math.inf)) == 0 and rcp_intel(f32(2.0 ** 126)) == 0 and rcp_intel(f32(2.0 ** 125)) > 0
    assert math.isnan(rcp_intel(f32(math.nan)))


def test_fork_logistic_of_very_negative_inputs_is_zero_not_nan():
    """expf(-x) overflows for x < -88.7: the Newton step after rcpps would make (inf * 0) * 0 = NaN (the fork's
    CPU build does; a cfg at learning_rate .01 trained into NaN from iteration 10 through its [yolo] logistic);
    a true division, as its GPU build, gives 0."""
    from pydarknet.kernels.activations import logistic_array32
    x = np.array([-98.0, -89.0, 0.0, 3.0, -98.0, -89.0], np.float32)   # four lanes, then a scalar tail of two
    logistic_array32(x)
    # the lanes' rcpps and Newton step leave 1/2 a bit short, as the fork's -Ofast build does
    assert x.tolist() == [0.0, 0.0, np.float32(0.49999997), np.float32(0.95257413), 0.0, 0.0]
