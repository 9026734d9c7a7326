"""The bf16 products (--bf16, PYDARKNET_PRODUCTS=bf16): convolutions on the AMX tiles in bfloat16 with float32
sums. Their kernels must compute exactly the products of the bf16-rounded operands (within float32 summation);
the detectors must keep their answers: every detection of the exact path found again with the same class, its
probability within .02 and its box within .01 (relative coordinates), as the README promises."""
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, shared_path
from golden import read_dets, run_case
from pydarknet.detect import network_detections, network_nms
from pydarknet.image import letterbox_image, load_image, resize_image
from pydarknet.kernels import amx, products
from pydarknet.kernels.conv import im2col_batch
from pydarknet.network import Network
from test_detect_golden import image_size

ROOT = Path(__file__).resolve().parent.parent
needs_amx = pytest.mark.skipif(amx.unavailable() is not None, reason=f"no AMX here: {amx.unavailable()}")
PROB, BOX = .02, .01   # the README's promise for --bf16 against the exact path


@pytest.fixture
def bf16_products():
    previous = products.set_backend("bf16")
    yield
    products.set_backend(previous)


def bf16_round(a):
    """float32 -> the nearest bf16 (ties to even), as float32: what the kernels multiply."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def reference(weights, x, size, stride, pad, dilation, out_h, out_w):
    """The convolution of the bf16-rounded operands, summed in float64."""
    c = x.shape[0]
    cols = np.empty((1, c * size * size, out_h * out_w), np.float32)
    im2col_batch(bf16_round(x)[None], 0, c, size, stride, pad, cols, False, dilation)
    return bf16_round(weights).astype(np.float64) @ cols[0].astype(np.float64)


@needs_amx
@pytest.mark.parametrize("channels,h,w,filters,size,stride,pad,dilation", [
    (64, 26, 26, 128, 3, 1, 1, 1), (33, 13, 17, 40, 3, 1, 1, 1), (32, 9, 7, 5, 1, 1, 0, 1),
    (128, 5, 40, 255, 1, 1, 0, 1), (64, 19, 21, 64, 3, 2, 1, 1), (65, 52, 52, 40, 3, 2, 1, 1),
    (64, 16, 16, 24, 3, 1, 2, 2), (32, 11, 11, 16, 5, 1, 2, 1), (96, 20, 20, 31, 2, 1, 0, 1)])
def test_amx_convolution_is_the_product_of_the_rounded_operands(bf16_products, channels, h, w, filters, size,
                                                               stride, pad, dilation):
    """Both kernels (stride 1: in place from shifted copies; strided or dilated: packed columns), on whole and
    cut tiles of filters and pixels, odd channel counts and paddings: within float32 summation of the exact
    products of the rounded operands (relative to the largest output)."""
    rng = np.random.default_rng(channels * h + filters)
    x = rng.standard_normal((channels, h, w), dtype=np.float32)
    weights = rng.standard_normal((filters, channels * size * size), dtype=np.float32)
    out_h = (h + 2 * pad - dilation * (size - 1) - 1) // stride + 1
    out_w = (w + 2 * pad - dilation * (size - 1) - 1) // stride + 1
    kernel = "shifted" if stride == 1 and dilation == 1 else "packed"   # each kernel, whatever the layer rule
    out = np.full((filters, out_h * out_w), np.nan, np.float32)
    kept = {}
    products.conv_bf16(products.pack_bf16(weights, channels, size, kernel), kernel, filters, x, size, stride, pad,
                       dilation, out_h, out_w, out,
                       lambda name, shape, dtype: kept.setdefault(name, amx.aligned_zeros(shape, dtype)))
    expected = reference(weights, x, size, stride, pad, dilation, out_h, out_w)
    assert np.abs(out - expected).max() <= 2e-6 * np.abs(expected).max()


def test_few_channels_and_groups_keep_the_fast_products(bf16_products):
    """The first layers (3 to 31 channels: the tiles' k would be mostly padding, and Yolo-Fastest's small layers
    lose too much precision), 1 x 1 ones under 128 channels, strided ones under 64 channels (their
    columns' packing outweighs the products) and grouped convolutions are not tiled; with any other backend
    nothing is."""
    if products.backend() == "bf16":
        assert [products.bf16_kernel(c, 3, 1, 1, 1) for c in (3, 31, 32)] == [None, None, "shifted"]
        assert [products.bf16_kernel(c, 1, 1, 1, 1) for c in (64, 127, 128)] == [None, None, "shifted"]
        assert [products.bf16_kernel(c, 3, 2, 1, 1) for c in (32, 63, 64)] == [None, None, "packed"]
        assert products.bf16_kernel(64, 3, 1, 1, 2) is None
    products.set_backend("fast")
    assert products.bf16_kernel(64, 3, 1, 1, 1) is None


def test_without_amx_bf16_warns_and_takes_the_fast_products(monkeypatch, capsys):
    monkeypatch.setattr(amx, "unavailable", lambda: "this CPU (as Numba compiles for it) lacks amx-tile")
    previous = products.set_backend("bf16")
    try:
        assert products.backend() == "fast"
    finally:
        products.set_backend(previous)
    assert capsys.readouterr().err.strip() == ("Warning: --bf16: this CPU (as Numba compiles for it) lacks "
                                              "amx-tile; using the --fast products")


def candidates(net, width, height, letterbox, thresh):
    """{(box index, class): (prob, box)} over `thresh` before NMS, from the network's last forward on an image of
    that size. Every box is listed (threshold 0 for darknet's objectness filter), so the same index is the same
    cell and anchor in both paths."""
    dets = network_detections(net, width, height, 0, letterbox=letterbox)
    return {(i, j): (p, np.array(dets.bbox[i], np.float64)) for i, j, p in dets.listing(thresh)}, dets


def assert_same_candidates(bf16, exact, thresh):
    """Each exact candidate is the bf16 one of its cell, anchor and class within PROB and BOX, and the other way
    round; one within PROB of the threshold may be missing on the other side (it may have crossed it)."""
    for ours, theirs, side in ((exact, bf16, "bf16"), (bf16, exact, "exact")):
        for key, (p, box) in ours.items():
            if key in theirs:
                q, other = theirs[key]
                assert abs(q - p) <= PROB and np.abs(other - box).max() <= BOX, \
                    f"{key}: {p:.4f} at {box.round(4)}, {side} path {q:.4f} at {other.round(4)}"
            else:
                assert p < thresh + PROB, f"{key}: {p:.4f} at {box.round(4)}, not over {thresh} in the {side} path"


def compare_paths(net, x, im, letterbox, thresh):
    """The exact path's candidates against the bf16 path's, and after NMS the same number of detections per class
    (NMS may keep another of two overlapping candidates whose probabilities are within PROB: the box it keeps
    can then move, as it does between any two summation orders). Returns the exact path's detections."""
    found = []
    for backend in ("darknet", "bf16"):
        products.set_backend(backend)
        net.forward(x)
        found.append(candidates(net, im.shape[2], im.shape[1], letterbox, thresh))
    (exact, exact_dets), (bf16, bf16_dets) = found
    assert_same_candidates(bf16, exact, thresh)
    kept = [network_nms(net, dets, .45).listing(thresh) for dets in (exact_dets, bf16_dets)]
    near = {j for (_, j), (p, _) in {**exact, **bf16}.items() if p < thresh + PROB}   # classes that may differ
    counts = [{j: [k for _, k, _ in listing].count(j) for j in {k for _, k, _ in listing} - near}
              for listing in kept]
    assert counts[0] == counts[1]
    return kept[0]


@needs_amx
@pytest.mark.parametrize("name,letterbox", [("yolov3-tiny", True), ("yolov4-tiny", False),
                                            ("yolo-fastest-1.1", False)])
@pytest.mark.parametrize("image", ["dog.jpg", "person.jpg", "eagle.jpg"])
def test_trained_detectors_keep_their_detections(bf16_products, name, letterbox, image):
    cfg = shared_path("cfg", f"{name}.cfg")
    weights = {"yolo-fastest-1.1": "yolo-fastest-1.1.weights"}.get(name, f"{name}.weights")
    net = Network(cfg, quiet_unused=True)
    net.load(shared_path("models", weights))
    im = load_image(shared_path("images", image))
    x = (letterbox_image if letterbox else resize_image)(im, net.w, net.h)[None]
    assert len(compare_paths(net, x, im, letterbox, .25)) >= 1


@needs_amx
@pytest.mark.parametrize("case", ["yolov3-tiny_dog", "yolov3-tiny_eagle", "yolov3-tiny_person"])
def test_golden_detection_cases_keep_their_detections(bf16_products, case):
    """darknet's own printed detections of the golden cases (their thresholds) are found by the bf16 path."""
    case_dir = shared_path("golden", "forward", case)
    net, info = run_case(case_dir, SHARED)   # the bf16 products: the fixture set them
    thresh = info["thresh"]
    dets = network_nms(net, network_detections(net, *image_size(case_dir), thresh, info["hier_thresh"],
                                               letterbox=info["preprocess"] == "letterbox"), info["nms"])
    ours = [(j, p, np.array(dets.bbox[i], np.float64)) for i, j, p in dets.listing(thresh)]
    darknet = [(int(r[5]), r[6], np.array(r[:4], np.float64)) for r in read_dets(case_dir)]
    assert len(darknet) >= 1
    for mine, theirs, side in ((darknet, ours, "bf16"), (ours, darknet, "darknet's")):
        for j, p, box in mine:
            assert p < thresh + PROB or any(k == j and abs(q - p) <= PROB and np.abs(b - box).max() <= BOX
                                            for k, q, b in theirs), f"class {j} {p:.4f} {box}: none in {side}"


@needs_amx
@pytest.mark.parametrize("name", ["shapes-tiny", "shapes-v4tiny"])
def test_shipped_demo_models_keep_their_detections(bf16_products, name):
    """The demo models (several layers over 32 channels) on the demo image."""
    net = Network(ROOT / "cfg" / f"{name}.cfg", quiet_unused=True)
    net.load(ROOT / "data" / f"{name}.weights")
    im = load_image(ROOT / "data" / "shapes.jpg")
    letterbox = net.darknet != "ab" or bool(net.letter_box)
    x = (letterbox_image if letterbox else resize_image)(im, net.w, net.h)[None]
    assert any(products.bf16_kernel(layer.in_shape[0], layer.size, layer.stride, layer.dilation, layer.groups)
               for layer in net.layers if layer.type == "convolutional")
    assert len(compare_paths(net, x, im, letterbox, .25)) >= 3


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory):
    from pydarknet.datasets import write_shapes
    return write_shapes(tmp_path_factory.mktemp("shapes"))   # the default set: its valid images follow the train


@needs_amx
@pytest.mark.parametrize("name", ["shapes-tiny", "shapes-v4tiny"])
def test_shipped_demo_models_keep_their_map(shapes_set, name):
    """mAP@0.50 of the demo models on the 150 validation images `datasets shapes` makes: within half a point of
    the exact path's (the README's 84.02 % and 91.43 %)."""
    from pydarknet.evaluate import run_map
    found = {}
    for backend in ("darknet", "bf16"):
        previous = products.set_backend(backend)
        try:
            found[backend] = run_map(shapes_set, ROOT / "cfg" / f"{name}.cfg", ROOT / "data" / f"{name}.weights")[1]
        finally:
            products.set_backend(previous)
    assert round(found["darknet"]["map"], 4) == {"shapes-tiny": .8402, "shapes-v4tiny": .9143}[name]
    assert abs(found["bf16"]["map"] - found["darknet"]["map"]) <= .005
