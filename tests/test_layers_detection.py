"""[reorg], [region], [detection], class trees and NMS on tiny hand-made inputs, checked by hand against
darknet's rules (reorg_cpu's index mapping, get_region_detections, get_detection_detections, tree.c,
do_nms_sort)."""
import math

import numpy as np
import pytest

from conftest import DATA, shared_path
from pydarknet.files.config import CfgError, DarknetError
from pydarknet.kernels.nms import glibc_sort_desc
from pydarknet.kernels.region import hierarchy_predictions, hierarchy_top_prediction
from pydarknet.network.network import Network
from pydarknet.results.boxes import Detections
from pydarknet.results.detections import do_nms_sort, network_detections
from pydarknet.results.tree import read_tree


def build(tmp_path, text, name="net.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return Network(path, quiet_unused=True)


def run(net, x):
    x = np.asarray(x, np.float32).reshape((1,) + net.input_shape)
    return net.forward(x)[0]


# -- [reorg] -------------------------------------------------------------------------------------------------
def test_reorg_is_pjreddies_gather_not_space_to_depth(tmp_path):
    # 4 x 2 x 2 input, stride 2: darknet reads the input as a 1 x 4 x 4 picture (reorg_cpu with forward=0)
    # and gathers: output value (k, j, i) = picture[2j + k//2, 2i + k%2]
    net = build(tmp_path, "[net]\nwidth=2\nheight=2\nchannels=4\n[reorg]\nstride=2\n")
    assert net.layers[0].out_shape == (16, 1, 1)
    out = run(net, np.arange(16)).reshape(-1)
    assert out.tolist() == [0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15]


def test_reorg_reverse_scatters(tmp_path):
    # 16 x 1 x 1, reverse, stride 2 -> 4 x 2 x 2: input channel k goes to channel k%4, pixel (k//4)//2, (k//4)%2,
    # i.e. flat position 4*(k%4) + k//4: a 4 x 4 transpose of 0..15
    net = build(tmp_path, "[net]\nwidth=1\nheight=1\nchannels=16\n[reorg]\nstride=2\nreverse=1\n")
    assert net.layers[0].out_shape == (4, 2, 2)
    out = run(net, np.arange(16)).reshape(-1)
    assert out.tolist() == [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]


def test_reorg_batch_items_are_independent(tmp_path):
    net = build(tmp_path, "[net]\nwidth=4\nheight=4\nchannels=8\n[reorg]\nstride=2\n")
    x = np.random.default_rng(1).standard_normal((2, 8, 4, 4)).astype(np.float32)
    both = net.forward(x).copy()
    assert np.array_equal(both[1], net.forward(x[1:])[0])


def test_reorg_flatten_and_extra(tmp_path):
    net = build(tmp_path, "[net]\nwidth=3\nheight=1\nchannels=2\n[reorg]\nflatten=1\n")
    assert run(net, np.arange(6)).reshape(-1).tolist() == [0, 3, 1, 4, 2, 5]      # planes -> interleaved
    net = build(tmp_path, "[net]\nwidth=3\nheight=1\nchannels=2\n[reorg]\nflatten=1\nreverse=1\n")
    assert run(net, np.arange(6)).reshape(-1).tolist() == [0, 2, 4, 1, 3, 5]      # interleaved -> planes
    net = build(tmp_path, "[net]\nwidth=3\nheight=1\nchannels=2\n[reorg]\nextra=3\n")
    assert run(net, np.arange(6) + 1).reshape(-1).tolist() == [1, 2, 3, 4, 5, 6, 0, 0, 0]
    assert net.layers[0].describe() == "reorg                 6   ->     9"


def test_reorg_layer_line_as_darknet_prints_it(tmp_path):
    net = build(tmp_path, "[net]\nwidth=8\nheight=8\nchannels=8\n[reorg]\nstride=2\n")
    assert net.summary()[1] == "    0 reorg              / 2     8 x   8 x   8   ->     4 x   4 x  32"


def test_reorg_line_in_golden_table():
    case = shared_path("golden", "forward", "yolov2_slim")
    table = (case / "darknet_stderr.txt").read_text().splitlines()
    net = Network(case / "net.cfg", quiet_unused=True)
    ours = net.summary()
    for i, layer in enumerate(net.layers):
        if layer.type in ("reorg", "region"):
            assert ours[i + 1] == table[i + 1]


@pytest.mark.parametrize("options, key", [("stride=2", "stride"), ("stride=0", "stride"),
                                          ("stride=3\nreverse=1", "stride"), ("stride=x", "stride")])
def test_reorg_refuses_what_darknet_would_misread(tmp_path, options, key):
    with pytest.raises(CfgError) as e:
        build(tmp_path, f"[net]\nwidth=5\nheight=5\nchannels=4\n[reorg]\n{options}\n")
    assert f"net.cfg:{6}" in str(e.value)


# -- [region] ------------------------------------------------------------------------------------------------
REGION = """[net]
width=2
height=1
channels=14
[region]
anchors=1,2, 3,4
classes=2
coords=4
num=2
softmax=1
"""


def region_input():
    # (anchor, entry, cell) for 2 anchors, entries x y w h obj c0 c1, 2 cells (w=2, h=1)
    x = np.zeros((2, 7, 2), np.float32)
    x[:, 5] = 0.0
    x[:, 6] = math.log(3.0)          # softmax -> 0.25, 0.75
    x[1, 4, 1] = -10.0              # objectness ~4.5e-5: under any threshold
    x[0, 2, 1] = math.log(2.0)      # w: exp -> 2
    return x


def test_region_forward(tmp_path):
    net = build(tmp_path, REGION)
    out = run(net, region_input()).reshape(2, 7, 2)
    assert np.allclose(out[:, 0:2], 0.5) and np.allclose(out[:, 2:4], region_input()[:, 2:4])
    assert np.allclose(out[0, 4], 0.5) and out[1, 4, 1] == pytest.approx(1 / (1 + math.exp(10)), rel=1e-6)
    assert np.allclose(out[:, 5], 0.25, atol=1e-7) and np.allclose(out[:, 6], 0.75, atol=1e-7)
    assert net.layers[0].describe() == "detection"


def test_region_detections_by_hand(tmp_path):
    net = build(tmp_path, REGION)
    run(net, region_input())
    dets = net.layers[0].detections(net.layers[0].output[0], 2, 1, 2, 1, 0.2)
    # darknet's order: anchor 0 cells 0, 1, then anchor 1 cells 0, 1
    expect_box = [[0.25, 0.5, 1 * 1 / 2, 2 / 1], [0.75, 0.5, 2 * 1 / 2, 2 / 1],
                  [0.25, 0.5, 3 / 2, 4 / 1], [0.75, 0.5, 3 / 2, 4 / 1]]
    assert np.allclose(dets.bbox, expect_box, rtol=1e-6)
    assert np.allclose(dets.objectness, [0.5, 0.5, 0.5, 0])
    assert np.allclose(dets.prob, [[0, 0.375], [0, 0.375], [0, 0.375], [0, 0]])   # 0.125 <= 0.2 -> 0
    pixels = net.layers[0].detections(net.layers[0].output[0], 2, 1, 2, 1, 0.2, relative=False)
    assert np.allclose(pixels.bbox, dets.bbox * [2, 1, 2, 1])


def test_region_background(tmp_path):
    net = build(tmp_path, REGION.replace("softmax=1", "softmax=1\nbackground=1"))
    x = region_input()
    x[:, 4] = math.log(2.0)             # background score takes part in the softmax: 2:1:3 -> 1/3, 1/6, 1/2
    out = run(net, x).reshape(2, 7, 2)
    assert np.allclose(out[:, 4:7], np.array([1 / 3, 1 / 6, 1 / 2])[None, :, None], atol=1e-7)
    dets = net.layers[0].detections(net.layers[0].output[0], 2, 1, 2, 1, 0.2)
    assert np.allclose(dets.objectness, 1)               # scale 1 with a background class
    assert np.allclose(dets.prob, [[0, 0.5]] * 4, atol=1e-7)


def test_region_logistic_classes_without_softmax(tmp_path):
    net = build(tmp_path, REGION.replace("softmax=1\n", ""))
    out = run(net, region_input()).reshape(2, 7, 2)
    assert np.allclose(out[:, 5], 0.5) and np.allclose(out[:, 6], 0.75, atol=1e-7)   # sigmoid(ln 3) = 3/4


def test_region_option_errors_name_file_and_line(tmp_path):
    with pytest.raises(CfgError, match=r"net\.cfg:8: 'coords=four'"):
        build(tmp_path, REGION.replace("coords=4", "coords=four"))
    with pytest.raises(CfgError, match=r"net\.cfg:5:.*14 channels.*filters=30"):
        build(tmp_path, REGION.replace("classes=2", "classes=5").replace("num=2", "num=3")
              .replace("anchors=1,2, 3,4", "anchors=1,2,3,4,5,6"))
    with pytest.raises(CfgError, match=r"net\.cfg:6: .*6 anchor values but num=2"):
        build(tmp_path, REGION.replace("anchors=1,2, 3,4", "anchors=1,2,3,4,5,6"))


# -- class trees ---------------------------------------------------------------------------------------------
TREE = "a -1\nb -1\na1 0\na2 0\nb1 1\nb2 1\nb3 1\n"


def test_read_tree_groups_as_darknet(tmp_path):
    (tmp_path / "t.tree").write_text(TREE)
    t = read_tree(tmp_path / "t.tree")
    assert t.n == 7 and t.groups == 3
    assert t.group_offset.tolist() == [0, 2, 4] and t.group_size.tolist() == [2, 2, 3]
    assert t.group.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert t.child.tolist() == [1, 2, -1, -1, -1, -1, -1]
    assert t.leaf.tolist() == [False, False, True, True, True, True, True]


def test_hierarchy_top_prediction(tmp_path):
    (tmp_path / "t.tree").write_text(TREE)
    t = read_tree(tmp_path / "t.tree")
    p = np.array([.7, .3, .4, .6, .2, .3, .5], np.float32)
    hierarchy_predictions(p, 0, 7, t.parent, t.leaf, False, 1)
    assert np.allclose(p, [.7, .3, .28, .42, .06, .09, .15])
    def top(thresh):
        return hierarchy_top_prediction(p, 0, t.parent, t.child, t.group_size, t.group_offset, np.float32(thresh), 1)
    # darknet multiplies the running product (.7) by the already absolute .42: .294
    assert top(0.5) == 0          # .294 is not over .5: stop at a
    assert top(0.25) == 3         # .294 > .25: a2, a leaf
    assert top(0.8) == 0          # not even the root group: its best


def test_region_with_tree(tmp_path):
    (tmp_path / "t.tree").write_text(TREE)
    cfg = ("[net]\nwidth=1\nheight=1\nchannels=12\n[region]\nclasses=7\ncoords=4\nnum=1\nsoftmax=1\n"
           "tree=t.tree\n")
    net = build(tmp_path, cfg)          # tree= found beside the cfg
    x = np.zeros(12, np.float32)
    x[5:12] = np.log([.7, .3, .4, .6, .2, .3, .5])
    out = run(net, x).reshape(-1)
    assert np.allclose(out[5:12], [.7, .3, .4, .6, .2, .3, .5], atol=1e-6)       # one softmax per group
    layer = net.layers[0]
    d = layer.detections(layer.output[0], 1, 1, 1, 1, 0.2, hier_thresh=0.5)
    assert np.allclose(d.prob, [[.5, 0, 0, 0, 0, 0, 0]])
    d = layer.detections(layer.output[0], 1, 1, 1, 1, 0.2, hier_thresh=0.25)
    assert np.allclose(d.prob, [[0, 0, 0, .5, 0, 0, 0]])
    assert np.allclose(layer.output[0].reshape(-1)[5:12], out[5:12])             # decoding left it alone
    with pytest.raises(CfgError, match="has 7 classes but classes=6"):
        build(tmp_path, cfg.replace("classes=7", "classes=6").replace("channels=12", "channels=11"))
    with pytest.raises(DarknetError, match="missing.tree"):
        build(tmp_path, cfg.replace("t.tree", "missing.tree"))


# -- [detection] ---------------------------------------------------------------------------------------------
DETECTION = """[net]
width=1
height=1
channels=24
[detection]
classes=2
coords=4
num=2
side=2
softmax=0
sqrt=1
"""


def test_detection_by_hand(tmp_path):
    # side 1, 2 boxes, 2 classes: the cell's class scores, then its box confidences, then its boxes
    net = build(tmp_path, DETECTION.replace("side=2", "side=1").replace("channels=24", "channels=12"))
    x = np.array([0.2, 0.8,                    # class scores of the one cell
                  0.5, 0.1,                    # confidences of its two boxes
                  0.5, 0.25, 0.5, 0.25,        # box 0: x y sqrt(w) sqrt(h)
                  0.0, 1.0, 1.0, 0.5], np.float32)
    out = run(net, x)
    assert np.array_equal(out.reshape(-1), x)       # no softmax: a copy
    dets = network_detections(net, 100, 50, 0.05, relative=True)   # pixels whatever `relative` says
    assert np.allclose(dets.bbox, [[50, 12.5, 25, 3.125], [0, 50, 100, 12.5]])
    assert np.allclose(dets.objectness, [0.5, 0.1])
    assert np.allclose(dets.prob, [[0.1, 0.4], [0, 0.08]])           # 0.1 * 0.2 = 0.02 <= 0.05 -> 0
    assert net.layers[0].describe() == "Detection Layer"
    assert net.summary()[1] == "    0 Detection Layer"


def test_detection_softmax_per_cell(tmp_path):
    net = build(tmp_path, DETECTION.replace("softmax=0", "softmax=1").replace("channels=24", "channels=48"))
    x = np.zeros(48, np.float32)
    x[0:8] = np.log([1, 3, 1, 1, 2, 2, 3, 1])
    out = run(net, x).reshape(-1)
    assert np.allclose(out[0:8], [.25, .75, .5, .5, .5, .5, .75, .25], atol=1e-7)
    assert np.array_equal(out[8:], x[8:])


def test_detection_option_errors(tmp_path):
    with pytest.raises(CfgError, match=r"net\.cfg:5:.*24 values.*need 48"):
        build(tmp_path, DETECTION)
    with pytest.raises(CfgError, match=r"net\.cfg:10: 'softmax=yes'"):
        build(tmp_path, DETECTION.replace("softmax=0", "softmax=yes").replace("channels=24", "channels=48"))


# -- get_network_boxes / do_nms_sort ---------------------------------------------------------------------------
def test_do_nms_sort_order_and_suppression():
    bbox = [[.5, .5, .2, .2], [.52, .5, .2, .2], [.1, .1, .1, .1], [.9, .9, .1, .1]]
    dets = Detections(bbox, [.9, 0, .8, .7], [[.3, 0], [.9, .9], [.6, .2], [.3, .5]])
    out = do_nms_sort(dets, 0.45)
    # det 1 (objectness 0) swaps with the last and drops out; the rest end sorted by class 1 (stable)
    assert out.objectness.tolist() == pytest.approx([.7, .8, .9, 0])
    assert out.prob[:, 1].tolist() == pytest.approx([.5, .2, 0, .9])
    # class 0: det 0 (.3) and det 3 (.3) tie and keep their order from the swap (0 first), nothing overlaps
    assert out.prob[:, 0].tolist() == pytest.approx([.3, .6, .3, .9])


def test_do_nms_sort_suppresses_overlaps():
    dets = Detections([[.5, .5, .2, .2], [.51, .5, .2, .2]], [.9, .9], [[.4], [.8]])
    out = do_nms_sort(dets, 0.45)
    assert out.prob[:, 0].tolist() == pytest.approx([.8, 0])
    assert out.bbox[0, 0] == pytest.approx(.51)


def test_glibc_sort_is_stable_and_treats_nan_as_equal():
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 5, 64, 333):
        key = rng.integers(0, 4, n).astype(np.float32)
        order = np.arange(n)
        glibc_sort_desc(key, order)
        assert order.tolist() == np.argsort(-key, kind="stable").tolist()
    # with NaN the merge order decides: [1, nan, 2] -> halves [1] and [nan, 2]; nan vs 2 "equal" keeps nan
    # first; merging: 1 vs nan equal -> 1, then nan, then 2 (a plain sort would move 2 before 1)
    order = np.arange(3)
    glibc_sort_desc(np.array([1, np.nan, 2], np.float32), order)
    assert order.tolist() == [0, 1, 2]


def test_local_region_case_table():
    net = Network(DATA / "forward" / "yolov2-tiny_slim" / "net.cfg", quiet_unused=True)
    assert net.summary()[-1] == "   15 detection"        # darknet's make_region_layer prints "detection"
