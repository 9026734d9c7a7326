"""Every AlexeyAB-fork golden forward case (../shared/golden/forward_ab): the network's [yolo] outputs from the
image file, decoded, resized or letterboxed as the fork's `detector test` does, with batch-norm fused or not as
the case says: within golden.FORK (4e-6) of the fork's outputs, with darknet's exact-order products."""
import pytest

from conftest import SHARED, shared_path
from golden import FORK, case_paths, layer_mismatch, or_skip
from pydarknet.files.image import letterbox_image, load_image, resize_image
from pydarknet.network.network import Network

CASES = sorted(p for p in (SHARED / "golden" / "forward_ab").glob("*") if p.is_dir()) \
    if (SHARED / "golden" / "forward_ab").is_dir() else []


def run_ab_case(case_dir):
    info, cfg, weights = case_paths(case_dir, SHARED)
    net = Network(cfg, quiet_unused=True)
    net.every_output = True   # every layer's output is compared
    net.load(weights)
    net.fuse_batchnorm = bool(info["fuse_batchnorm"])
    prepare = letterbox_image if info["preprocess"] == "letterbox" else resize_image
    im = prepare(load_image(SHARED / info["image"]), net.w, net.h)
    net.forward(im[None])
    return net


@pytest.mark.parametrize("case_dir", or_skip(CASES, "golden/forward_ab"), ids=lambda p: p.name)
def test_forward_ab_case(case_dir, darknet_products):
    net = run_ab_case(case_dir)
    assert net.darknet == "ab"
    assert layer_mismatch(net, case_dir, FORK) is None, layer_mismatch(net, case_dir, FORK)


def test_forward_ab_cases_present():
    shared_path("golden", "forward_ab")
    assert len(CASES) >= 11
