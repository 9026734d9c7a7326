"""-tiles and Detector(..., tiles=...): small objects on a large image (tests/tiled_shapes.py) found tile by tile,
a box cut by a tile's edge joined into one, the whole-image pass for an object larger than a tile."""
import numpy as np

from conftest import ROOT, run_command as run
from pydarknet.files.config import read_names
from pydarknet.files.datasets import NOISE, distinct_colour, draw_shape
from pydarknet.results.tiles import Tiles, origins
from pydarknet.tasks.predict import Detector
from tiled_shapes import recall, tiled_scene

CFG, WEIGHTS = str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")
NAMES = read_names(ROOT / "data/shapes.names")


def detector(tiles=None):
    return Detector(CFG, WEIGHTS, names=NAMES, tiles=tiles)


def one_shape(seed, width, height, patch=None):
    """(BGR image, truth [(class, left, top, right, bottom)]): one shape of the set's drawing on a noisy canvas,
    drawn in the patch (x0, x1) of the canvas when given."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, 3)
    image = np.clip(background + rng.normal(0, NOISE, (height, width, 3)), 0, 255).astype(np.uint8)
    x0, x1 = patch or (0, width)
    part = image[:, x0:x1].copy()
    left, top, right, bottom = draw_shape(part, rng, seed % 3, distinct_colour(rng, background))
    image[:, x0:x1] = part
    return image, [(seed % 3, x0 + left, top, x0 + right, bottom)]


def iou(d, truth):
    _, left, top, right, bottom = truth
    bx, by, bw, bh = d.pixels
    inter = max(0, min(right, bx + bw) - max(left, bx)) * max(0, min(bottom, by + bh) - max(top, by))
    return inter / ((right - left) * (bottom - top) + bw * bh - inter)


def test_tiles_find_the_small_objects_the_whole_image_misses():
    image, truth = tiled_scene()   # 35 shapes of 13-50 pixels on 960 x 640
    plain = detector().detect(image, thresh=.5)
    tiled = detector(True).detect(image, thresh=.5)
    assert recall(plain, truth)[1] == 0 and len(plain.detections) == 2      # the whole image shrunk 6 times
    assert recall(tiled, truth)[1] == 34 and len(tiled.detections) == 34    # 40 tiles; each found once
    assert recall(detector(True).detect(image, thresh=.25), truth)[1] == 34


def test_a_box_cut_by_a_tile_edge_becomes_one_box():
    image, truth = one_shape(11, 320, 160, patch=(80, 240))   # a triangle across x = 160, two tiles, no overlap
    halves = [detector().detect(np.ascontiguousarray(image[:, x:x + 160]), thresh=.25) for x in (0, 160)]
    assert [len(h.detections) for h in halves] == [1, 1]
    pieces = [h.detections[0] for h in halves]
    pieces[1].pixels = (pieces[1].pixels[0] + 160,) + pieces[1].pixels[1:]
    assert all(iou(p, truth[0]) < .5 for p in pieces)          # each tile's piece alone is not the object
    tiled = detector(Tiles(overlap=0)).detect(image, thresh=.25)
    assert len(tiled.detections) == 1 and iou(tiled.detections[0], truth[0]) > .7
    left, top, width, height = tiled.detections[0].pixels
    assert (left, left + width) == (pieces[0].pixels[0], pieces[1].pixels[0] + pieces[1].pixels[2])


def test_the_whole_image_pass_finds_an_object_larger_than_a_tile():
    image, truth = one_shape(3, 480, 320)   # a circle of 128 pixels: each tile sees pieces of it
    assert recall(detector(Tiles()).detect(image, thresh=.25), truth)[1] == 0
    both = detector(Tiles(whole=True)).detect(image, thresh=.25)
    assert recall(both, truth)[1] == 1 and max(iou(d, truth[0]) for d in both.detections) > .9


def test_an_image_no_larger_than_the_network_is_detected_as_without_tiles():
    image = tiled_scene()[0][:150, :160]
    plain, tiled = detector().detect(image, thresh=.25), detector(True).detect(image, thresh=.25)
    assert len(plain.detections) > 0
    assert [(d.class_id, d.prob, d.box) for d in tiled.detections] == [(d.class_id, d.prob, d.box)
                                                                       for d in plain.detections]


def test_tiles_spread_from_edge_to_edge_with_the_overlap():
    starts = origins(960, 160, .25)
    assert starts[0] == 0 and starts[-1] == 800 and len(starts) == 8
    assert min(a + 160 - b for a, b in zip(starts, starts[1:])) >= 40
    assert origins(100, 160, .25) == [0] and origins(320, 160, 0) == [0, 160]


def test_the_tiles_flag_on_the_command_line(capsys, tmp_path):
    import cv2
    image, truth = tiled_scene()
    cv2.imwrite(str(tmp_path / "scene.png"), image)
    code, out, _ = run(capsys, "detector", "test", ROOT / "cfg/shapes.data", CFG, WEIGHTS, tmp_path / "scene.png",
                       "-tiles", "-q", "--json")
    assert code == 0 and out.count('"class_id"') == 34
    code, out, err = run(capsys, "detect", CFG, WEIGHTS, tmp_path / "scene.png", "-tile_overlap", ".5")
    assert (code, out) == (2, "") and err.startswith("pydarknet: error: -tile_overlap and -tile_whole go with -tiles")
    code, _, err = run(capsys, "detect", CFG, WEIGHTS, tmp_path / "scene.png", "-tiles", "-tile_overlap", ".9")
    assert code == 2 and "Invalid value for '-tile_overlap': 0.9 is not in the range 0<=x<=0.75" in err
