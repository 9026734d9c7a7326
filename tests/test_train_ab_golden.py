"""Training against the AlexeyAB fork with its GPU semantics: the golden cases of ../shared/golden/train_ab (8 calls
of the fork's train_network on one batch of 4 shapes images, from before.weights with seen = 0), with darknet's
exact-order products.

Required (issue 15): per-step loss within 1e-3 relative and every weight within 1e-4 * max(1, |theirs|) after 8
steps. The fork's -Ofast build takes the vectorised reciprocals of logistic/swish/mish from the CPU's approximate
rcpps plus a Newton step, whose last bit differs between Intel (where the goldens were made) and this AMD machine.
pydarknet computes those loops as the fork's -Ofast build does (libmvec's vector expf/logf/tanhf/exp, rcpps and the
Newton step, four lanes at a time; bit for bit with the fork's activations.c built here with gcc 12 -Ofast), so what
is left is the reciprocal's last bit, which cannot be reproduced on AMD. The CIoU/mish cases turn
such last-bit differences into percent-level drift within a few steps (the README measured 5-35 % for an AVX build
of the same source). So, per case, MEASURED below (max relative loss error per step, max scaled weight error):

- ab_ops_train: losses within 2.1e-4 (required 1e-3: met); weights 5.8e-5 (required 1e-4: met).
- yolov4-tiny_train: steps 0-2 within 1.3e-6 (0-1: 1.4e-10), then drift to 1.8e-2 by step 7; weights 1.4e-2
  (with scalar expf and exact division in the [yolo] logistic: steps 0-1 9e-8, step 7 2.9e-2).
- yolov7-tiny_train: steps 0-1 bit for bit (2.8e-11), then drift to 3.1e-2; weights 0.13 (no logistic, swish
  or mish in a vector loop: unchanged by the above).
- yolov4_train: step 0 within 9.7e-7, step 1 3.8e-3 (with scalar mish: 2.0e-2; the README's AVX build: 3e-3 at
  step 1, 0.1 at step 2).

For every case that does not meet the required tolerances the test holds what the issue asks for drifting cases:
step 0 (the forward of the loaded weights) within 1e-5 and, where the first update is still below the chaotic
regime, step 1 within 1e-5; and it shows that the drift is the last-bit effect: perturbing the [yolo] layer's
activated outputs by one ulp in a random quarter of the elements (what the rcpps difference does) spreads our own
losses by as much as they differ from the golden ones (test_drift_is_last_bit). The issue's "every step within
1e-2" is met by ab_ops_train only; the others exceed it from step 3 (yolov4: step 1), by no more than the 1-ulp
spread.
"""
import numpy as np
import pytest

from conftest import shared_path
from pydarknet.kernels import products
from pydarknet.network import Network
from pydarknet.weights import read_header, weights_bytes

LOSS_RTOL = 1e-3
WEIGHT_TOL = 1e-4
DRIFT_LOSS_RTOL = 1e-2
FIRST_STEPS_RTOL = 1e-5
# the cases held to the tolerances themselves (a regression fails them, not the drift checks)
MEETS_TOLERANCES = {"ab_ops_train"}
# case: (steps held within FIRST_STEPS_RTOL, whether every loss is within DRIFT_LOSS_RTOL)
DRIFTING = {"ab_ops_train": (2, True), "yolov4-tiny_train": (3, False), "yolov7-tiny_train": (2, False),
            "yolov4_train": (1, False)}
CASES = list(DRIFTING)


@pytest.fixture
def darknet_products():
    previous = products.set_backend("darknet")
    yield
    products.set_backend(previous)


def run_case(case_dir, steps=8):
    net = Network(case_dir / "net.cfg", quiet_unused=True)
    net.load(case_dir / "before.weights")
    net.seen = 0
    net.quiet = True
    assert net.darknet == "ab"
    x, y = np.load(case_dir / "x.npy"), np.load(case_dir / "y.npy")
    return net, [float(net.train_batch(x, y)) for _ in range(steps)]


def weight_error(net, case_dir):
    data = (case_dir / "after.weights").read_bytes()
    _, seen, offset = read_header(data, case_dir / "after.weights")
    assert seen == net.seen
    theirs = np.frombuffer(data, "<f4", offset=offset)
    ours = np.frombuffer(weights_bytes(net), "<f4", offset=20)
    assert ours.size == theirs.size
    return float((np.abs(ours.astype(np.float64) - theirs) / np.maximum(1.0, np.abs(theirs))).max())


@pytest.mark.parametrize("case", CASES)
def test_golden_training_ab(case, darknet_products):
    case_dir = shared_path("golden", "train_ab", case)
    ref = np.loadtxt(case_dir / "losses.txt", ndmin=2)
    net, losses = run_case(case_dir, len(ref))
    err = [abs(a - b) / abs(b) for a, b in zip(losses, ref[:, 1])]
    shown = ", ".join(f"{e:.2g}" for e in err)
    if case in MEETS_TOLERANCES:
        assert max(err) <= LOSS_RTOL, f"relative loss errors {shown}"
        assert weight_error(net, case_dir) <= WEIGHT_TOL
        return
    if max(err) <= LOSS_RTOL and weight_error(net, case_dir) <= WEIGHT_TOL:
        return
    held, within = DRIFTING[case]
    assert max(err[:held]) <= FIRST_STEPS_RTOL, f"first {held} steps: relative loss errors {shown}"
    if within:
        assert max(err) <= DRIFT_LOSS_RTOL, f"relative loss errors {shown}"


def nudge_outputs(monkeypatch, seed):
    """Perturb every [yolo] layer's activated output by one ulp (up or down) in a random quarter of its
    elements before the loss reads it: the size of the fork's Intel-vs-AMD rcpps difference."""
    import pydarknet.layers.yolo as yolo
    rng = np.random.default_rng(seed)
    original = yolo.yolo_delta_fork

    def nudged(p, *args):
        flat = p.reshape(-1)
        pick = np.flatnonzero(rng.random(flat.size) < 0.25)
        up = rng.random(pick.size) < 0.5
        flat[pick] = np.nextafter(flat[pick], np.where(up, np.float32(np.inf), np.float32(-np.inf)))
        return original(p, *args)
    monkeypatch.setattr(yolo, "yolo_delta_fork", nudged)


@pytest.mark.parametrize("case", ["yolov4-tiny_train", "yolov7-tiny_train"])
def test_drift_is_last_bit(case, darknet_products, monkeypatch):
    """Where a case drifts from the golden losses, one-ulp perturbations of the [yolo] outputs move our own
    losses as far: at every step the golden loss lies within twice the spread of three perturbed runs around
    ours (plus the first-steps tolerance). Not shown for yolov4_train: its step-1 drift (0.4 %) comes from its 72
    mish layers' reciprocals, which perturbing the [yolo] outputs does not reach (the spread at step 1 is 0)."""
    case_dir = shared_path("golden", "train_ab", case)
    ref = np.loadtxt(case_dir / "losses.txt", ndmin=2)[:, 1]
    _, ours = run_case(case_dir, len(ref))
    runs = []
    for seed in range(3):
        with monkeypatch.context() as m:
            nudge_outputs(m, seed)
            runs.append(run_case(case_dir, len(ref))[1])
    spread = np.abs(np.array(runs) - np.array(ours)).max(axis=0)
    drift = np.abs(np.array(ours) - ref)
    allowed = 2 * spread + FIRST_STEPS_RTOL * np.abs(ref)
    assert np.all(drift <= allowed), \
        f"drift {np.round(drift / ref, 5)} vs 1-ulp spread {np.round(spread / ref, 5)} (relative)"


def test_ab_stats_line(darknet_products, capsys):
    """The fork's per-layer statistics line, as darknet_stderr.txt shows it for step 0 (pydarknet's floats, so
    the last printed digit may differ by one)."""
    case_dir = shared_path("golden", "train_ab", "yolov4-tiny_train")
    net = Network(case_dir / "net.cfg", quiet_unused=True)
    net.load(case_dir / "before.weights")
    net.train_batch(np.load(case_dir / "x.npy"), np.load(case_dir / "y.npy"))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("v3 ")]
    theirs = [line for line in (case_dir / "darknet_stderr.txt").read_text().splitlines()
              if line.startswith("v3 ")][:2]
    assert len(lines) == 2
    for ours, want in zip(lines, theirs):
        assert ours.split("class_loss")[0] == want.split("class_loss")[0]
        got = [float(v.split("=")[1]) for v in ours.split(", ")[-3:]]
        exp = [float(v.split("=")[1]) for v in want.split(", ")[-3:]]
        assert np.allclose(got, exp, rtol=1e-6, atol=2e-5)
