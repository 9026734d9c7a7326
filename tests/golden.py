"""Running a golden forward case (see ../shared/README.md) and comparing with what darknet stored."""
import json

import numpy as np
import pytest

from pydarknet.network.network import Network

# Tolerances: elementwise |ours - darknet's| <= tolerance * max(1, |darknet's|).
EXACT = 0   # pjreddie's layer outputs, with darknet's summation order for the products: bit for bit
PRINTED = 5e-7 + 1e-9   # a figure darknet printed with "%f" (dets.txt: 6 decimals): that rounding alone
# dets.txt's boxes: the printing, plus up to two float32 ulps (2^-23 each, scaled): darknet's -Ofast build (gcc's
# -funsafe-math-optimizations) evaluates get_yolo_box/get_region_box and correct_*_boxes in float, with
# reciprocals, where the C source writes double expressions (0.976190448 of pydarknet, darknet's 0.976190507 in
# yolov3_slim). Measured: 6.15e-7 (yolov3_slim), 5.9e-7 on the fork's cases.
DETECTIONS = PRINTED + 2 * 2.0 ** -23
# The fork's forward cases: made on an AMD CPU, whose approximate reciprocal (rcpps, in the -Ofast logistic, swish
# and mish) differs from Intel's, which pydarknet reproduces (the fork's training goldens come from an Intel Xeon),
# by 1-3 ulp in about a quarter of the elements. Measured: 3.87e-6 (yolov4), as ../shared/README.md's 3.9e-6.
FORK = 4e-6
TOLERANCE = 1e-4   # outputs not computed in darknet's order: the GPU engine (README, On a GPU; tests/test_cuda.py)

# Darknet's [crop] in vgg16_slim cuts 224x224 out of a 96x96 input without a bounds check: it read memory outside
# its input buffer (whatever the golden generator had allocated there), which no re-implementation can
# reproduce. Every layer after it matches when fed darknet's own crop output (test_vgg16_after_crop).
UNREPRODUCIBLE = {"vgg16_slim": "darknet's crop read 6208 floats past its 96x96 input (undefined memory)"}


def or_skip(params, where, names=1):
    """params, or where they are none (../shared/<where> absent), one parameter of `names` values skipped with a
    reason naming what is missing: pytest's own for an empty list says only "got empty parameter set"."""
    if params:
        return params
    reason = f"needs ../shared/{where} (the shared reference data is not beside the project)"
    return [pytest.param(*[None] * names, id="no-shared", marks=pytest.mark.skip(reason=reason))]


def case_param(case_dir):
    """A pytest parameter for a golden case, expected to fail (strictly) where darknet's answer is unreproducible."""
    reason = UNREPRODUCIBLE.get(case_dir.name)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(case_dir, id=case_dir.name, marks=marks)


def case_paths(case_dir, shared):
    """cfg and weights of a case: paths in case.json are relative to the case, or to shared/ for cfg/ and models/."""
    info = json.loads((case_dir / "case.json").read_text())

    def resolve(rel):
        return (shared / rel) if rel.split("/")[0] in ("cfg", "models") else (case_dir / rel)
    return info, resolve(info["cfg"]), resolve(info["weights"])


def run_case(case_dir, shared, engine=None, every_output=True):
    """Load the case's network, feed input.npy, return (net, info). `engine`: run the forward on that runtime in
    float32 (tasks.engines.RuntimeEngine; its graphs cached in the test session's folder). `every_output`: each
    layer keeps its own output, to be compared; else the pass plans its memory as a user's does (shared outputs,
    residuals added in place), and only the outputs the caller reads stay."""
    info, cfg, weights = case_paths(case_dir, shared)
    net = Network(cfg, quiet_unused=True)
    net.every_output = every_output
    net.load(weights)
    x = np.load(case_dir / "input.npy")
    if x.shape != net.input_shape:  # resize_min cases: darknet resized the network to the image
        net.resize(x.shape[2], x.shape[1])
    if engine is not None:
        from pydarknet.tasks.engines import RuntimeEngine
        net.engine = RuntimeEngine(net, engine, fast=True)
    net.forward(x[None])
    return net, info


def layer_mismatch(net, case_dir, tolerance=TOLERANCE, only=None):
    """None when every stored layer output matches (scaled error <= tolerance; 0: bit for bit), else a message
    naming the first layer that breaks. `only`: the indices of the layers compared (None: all)."""
    for entry in json.loads((case_dir / "layers.json").read_text()):
        if "file" not in entry or (only is not None and entry["index"] not in only):
            continue
        ref = np.load(case_dir / entry["file"])
        out = net.layers[entry["index"]].output[0].reshape(ref.shape)
        err = np.abs(out.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref))
        err[np.isinf(ref) & (out == ref)] = 0
        err[np.isnan(ref) & np.isnan(out)] = 0
        err[np.isnan(err)] = np.inf
        if err.size and err.max() > tolerance:
            worst = np.unravel_index(np.argmax(err), err.shape)
            return (f"layer {entry['index']} ({entry['type']}) first breaks: worst element {worst}: "
                    f"ours {out[worst]!r}, darknet {ref[worst]!r}, scaled error {err.max():.3g}")
    return None


def read_dets(case_dir):
    """dets.txt rows: detectors (x, y, w, h, objectness, class, prob); classifiers (class, prob)."""
    rows = []
    for line in (case_dir / "dets.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append([float(v) for v in line.split()])
    return rows


def close(a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same_inf = np.isinf(a) & (a == b)
    with np.errstate(invalid="ignore"):   # inf - inf: equal infinities count through same_inf
        return bool(np.all(same_inf | (np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b)))))
