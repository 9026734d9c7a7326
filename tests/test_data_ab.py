"""pydarknet.tasks.train.data_ab: the AlexeyAB fork's detector batches. The geometry is pinned on synthetic images whose
objects are flat coloured rectangles: after crop/stretch, flip, letter_box and mosaic every truth box must sit
exactly where that colour went, no visible rectangle may lose its box and none may get two."""
import cv2
import numpy as np
import pytest

from conftest import shared_path
from pydarknet.files import labels as L
from pydarknet.tasks.train import data as D
from pydarknet.tasks.train.run import detection_dataset
from pydarknet.tasks.train import data_ab as A
from pydarknet.files.config import DarknetError
from pydarknet.kernels import augment as K
from pydarknet.network.network import Network

BACKGROUND = (128, 128, 128)
COLOURS = [(230, 20, 20), (20, 200, 20), (20, 20, 230), (230, 230, 20), (230, 20, 230), (20, 230, 230),
           (250, 140, 0), (110, 40, 0)]


class FixedRng:
    """Stands in for a numpy Generator: random() is always `u`, integers(n) always min(k, n - 1)."""

    def __init__(self, u=0.5, k=0):
        self.u, self.k = u, k

    def random(self):
        return self.u

    def integers(self, low, high=None, size=None):
        low, high = (0, low) if high is None else (low, high)
        value = min(low + self.k, high - 1)
        return value if size is None else np.full(size, value, np.int64)


def write_scene(folder, name, size, rects):
    """A lossless image of `size` (w, h) on the grey background with `rects` {class: (x0, y0, x1, y1)} filled
    with their colours (pixels x0..x1-1), and its label file with the exact boxes."""
    w, h = size
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = BACKGROUND
    lines = []
    for cls, (x0, y0, x1, y1) in rects.items():
        rgb[y0:y1, x0:x1] = COLOURS[cls]
        lines.append(f"{cls} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}")
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / f"{name}.png"), rgb[:, :, ::-1])
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return str(folder / f"{name}.png")


def colour_box(image, colour, tol=12):
    """(left, right, top, bottom) pixel edges of the pixels of `colour` in a uint8 (3, h, w) image, and their
    count; None when there are none."""
    mask = (np.abs(image.astype(np.int32) - np.array(colour)[:, None, None]) <= tol).all(axis=0)
    if not mask.any():
        return None, 0
    ys, xs = np.nonzero(mask)
    return (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1), int(mask.sum())


def box_edges(row, w, h):
    x, y, bw, bh = (float(v) for v in row[:4])
    return np.array([(x - bw / 2) * w, (x + bw / 2) * w, (y - bh / 2) * h, (y + bh / 2) * h])


def boxes_of(truth):
    return truth[truth[:, 0] != 0]


def assert_boxes_on_their_colours(image, truth, tol_px=1.0):
    """Every box covers exactly the pixels of its class's colour (edges within `tol_px`: the stretch blends the
    border pixels), and every rectangle visible over at least 3x3 pixels has exactly one box."""
    _, h, w = image.shape
    classes = [int(c) for c in boxes_of(truth)[:, 4]]
    assert len(classes) == len(set(classes)), f"a rectangle has two boxes: {classes}"
    for cls, colour in enumerate(COLOURS):
        found, count = colour_box(image, colour)
        rows = [row for row in boxes_of(truth) if int(row[4]) == cls]
        visible = found is not None and found[1] - found[0] >= 3 and found[3] - found[2] >= 3
        if visible:
            assert rows, f"class {cls}: visible at {found} ({count} px) but no box"
        if rows:
            edges = box_edges(rows[0], w, h)
            assert found is not None, f"class {cls}: box {edges} over no pixel of its colour"
            np.testing.assert_allclose(edges, found, atol=tol_px, err_msg=f"class {cls}")
            cx, cy = int((edges[0] + edges[1]) / 2), int((edges[2] + edges[3]) / 2)
            assert (np.abs(image[:, cy, cx].astype(int) - colour) <= 12).all()


def plain_options(**changes):
    """No colour change, blur or noise: the geometry alone."""
    return A.AbOptions(**{"max_boxes": 20, "jitter": 0.2, "hue": 0.0, "saturation": 1.0, "exposure": 1.0,
                          "flip": False, **changes})


@pytest.fixture
def scene(tmp_path):
    """A 200x120 image with a red rectangle at x 20..80, y 10..50 and a green one at x 120..180, y 60..110."""
    return write_scene(tmp_path / "images", "scene", (200, 120), {0: (20, 10, 80, 50), 1: (120, 60, 180, 110)})


# ---------------------------------------------------------------------------------------------------------
# one image: crop, stretch, flip, letter_box
# ---------------------------------------------------------------------------------------------------------

def test_crop_with_per_side_jitter_then_stretch(scene):
    # jitter .2 of 200x120: dw = 40, dh = 24; random() = .75 moves every side .5 of that inwards:
    # pleft = pright = 20, ptop = pbot = 12 -> the 160x96 window at (20, 12), stretched by .625 to 100x60
    image, truth, sides = A.load_piece(scene, 100, 60, plain_options(), FixedRng(0.75))
    assert sides == (20, 20, 12, 12, 200, 120)
    assert image.shape == (3, 60, 100) and image.dtype == np.uint8
    rows = boxes_of(truth)[np.argsort(boxes_of(truth)[:, 4])]
    # red: x 20..80 -> 0..60 in the window -> 0..37.5; y 10..50 -> -2..38, clamped 0..38 -> 0..23.75
    # green: x 120..180 -> 100..160 -> 62.5..100; y 60..110 -> 48..98, clamped to 96 -> 30..60
    np.testing.assert_allclose(rows, [[37.5 / 200, 23.75 / 120, .375, 23.75 / 60, 0],
                                      [162.5 / 200, .75, .375, .5, 1]], rtol=2e-6)
    assert_boxes_on_their_colours(image, truth, tol_px=0.6)
    window = cv2.imread(scene)[12:108, 20:180, ::-1]
    expected = cv2.resize(window, (100, 60), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    assert np.abs(image.astype(int) - expected).max() <= 1   # OpenCV's bilinear, to its rounding


def test_crop_outside_the_image_is_padded_with_its_mean(scene):
    # random() = .25: every side moves .5 of the jitter outwards (pleft = -20, ptop = -12): a 240x144 window
    image, truth, sides = A.load_piece(scene, 120, 72, plain_options(), FixedRng(0.25))
    assert sides == (-20, -20, -12, -12, 200, 120)
    rgb = cv2.imread(scene)[:, :, ::-1]
    mean = np.rint(rgb.reshape(-1, 3).mean(axis=0))
    # the window is stretched by exactly .5: the 10 left columns and 6 top rows are the mean colour
    assert (image[:, :, :9] == mean[:, None, None]).all() and (image[:, :5, :] == mean[:, None, None]).all()
    rows = boxes_of(truth)[np.argsort(boxes_of(truth)[:, 4])]
    np.testing.assert_allclose(rows[:, :4] * [120, 72, 120, 72], [[35, 21, 30, 20], [85, 48.5, 30, 25]],
                               rtol=1e-5)
    assert_boxes_on_their_colours(image, truth, tol_px=0.6)


def test_yolo_resize_widens_the_crop_range():
    # [yolo] resize=1.5 on a 200x120 image: each side moves between -1/4 of the size (the crop grows 1.5x) and
    # +(1 - 1/1.5)/2 of it (it shrinks 1.5x); resize=.5 only grows it, up to 2x
    sides = {(resize, u): A.crop_sides(200, 120, 100, 60, plain_options(jitter=0.0, resize=resize),
                                       A.draw_augmentation(FixedRng(u), plain_options()))
             for resize in (1.5, 0.5) for u in (0.0, 1.0)}
    assert sides[1.5, 0.0] == (-50, -50, -30, -30) and sides[1.5, 1.0] == (33, 33, 19, 19)
    assert sides[0.5, 0.0] == (-100, -100, -60, -60) and sides[0.5, 1.0] == (0, 0, 0, 0)


def test_flip_mirrors_pixels_and_boxes(scene):
    plain, truth, _ = A.load_piece(scene, 100, 60, plain_options(), FixedRng(0.75, k=0))
    flipped, flipped_truth, sides = A.load_piece(scene, 100, 60, plain_options(flip=True), FixedRng(0.75, k=1))
    np.testing.assert_array_equal(flipped, plain[:, :, ::-1])
    a, b = boxes_of(truth), boxes_of(flipped_truth)
    a, b = a[np.argsort(a[:, 4])], b[np.argsort(b[:, 4])]
    np.testing.assert_allclose(b[:, 0], 1 - a[:, 0], atol=1e-6)
    np.testing.assert_array_equal(b[:, 1:], a[:, 1:])
    assert_boxes_on_their_colours(flipped, flipped_truth, tol_px=0.6)
    assert sides[:2] == (20, 20)


def test_letter_box_keeps_the_aspect_ratio(tmp_path):
    path = write_scene(tmp_path, "wide", (200, 100), {0: (20, 10, 80, 50), 1: (120, 60, 180, 90)})
    # 2:1 into 100x100 without jitter: 50 rows of the mean above and below, then a uniform scale of .5
    image, truth, sides = A.load_piece(path, 100, 100, plain_options(jitter=0.0, letter_box=True), FixedRng(0.5))
    assert sides == (0, 0, -50, -50, 200, 100)
    mean = np.rint(cv2.imread(path)[:, :, ::-1].reshape(-1, 3).mean(axis=0))
    assert (image[:, :25] == mean[:, None, None]).all() and (image[:, 75:] == mean[:, None, None]).all()
    rows = boxes_of(truth)[np.argsort(boxes_of(truth)[:, 4])]
    np.testing.assert_allclose(rows[:, :4] * 100, [[25, 40, 30, 20], [75, 62.5, 30, 15]], rtol=1e-5)
    assert_boxes_on_their_colours(image, truth, tol_px=0.6)


def test_random_crops_follow_the_pixels(scene):
    opt = plain_options(jitter=0.3, resize=1.5, flip=True)
    for seed in range(12):
        image, truth, (pleft, pright, ptop, pbot, ow, oh) = A.load_piece(scene, 96, 64, opt,
                                                                        np.random.default_rng(seed))
        # a zoomed-in crop spreads a rectangle's border over half a source pixel on each side
        zoom = max(96 / (ow - pleft - pright), 64 / (oh - ptop - pbot))
        assert_boxes_on_their_colours(image, truth, tol_px=0.6 + zoom / 2)


# ---------------------------------------------------------------------------------------------------------
# truths
# ---------------------------------------------------------------------------------------------------------

def test_fill_truth_cuts_to_max_boxes_then_drops_boxes_under_a_pixel():
    labels = np.array([[.5, .5, .5, .5, 0], [.2, .2, .009, .3, 1], [.7, .7, .2, .2, 2]], np.float32)
    # identity crop of a 100x100 image, network 100x100: 0.009 is under one pixel
    truth, min_w_h = A.fill_truth_detection_ab(labels, 3, False, 0, 0, 100, 100, 100, 100, 100, 100, FixedRng())
    kept = boxes_of(truth)
    assert sorted(kept[:, 4]) == [0, 2] and min_w_h == 20
    # max_boxes cuts before the drop (the fork's order): the shuffle (every row swapped with row 1) puts the
    # thin box first, then the third: only one box is left of two
    truth, _ = A.fill_truth_detection_ab(labels, 2, False, 0, 0, 100, 100, 100, 100, 100, 100, FixedRng(k=1))
    assert truth.shape == (2, 5) and len(boxes_of(truth)) == 1


def test_blend_truth_mosaic_keeps_room_for_the_first_boxes_only():
    truth = np.zeros((3, 5), np.float32)
    truth[:2] = [[.1, .1, .05, .05, 0], [.2, .2, .05, .05, 1]]
    piece = np.zeros((3, 5), np.float32)
    piece[:2] = [[.9, .9, .1, .1, 2], [.8, .8, .1, .1, 3]]
    # bottom-right quarter of a 100x100 mosaic cut at (50, 50), nothing shifted: boxes move by +.5
    A.blend_truth_mosaic(truth, piece, 3, 100, 100, 50, 50, (0, 0, 0, 0), False)
    # .9 + .5 is out of the image: dropped; only one slot was left, so class 3 is never considered
    assert truth[2].tolist() == [0, 0, 0, 0, 0]
    piece[0] = [.3, .3, .1, .1, 2]
    A.blend_truth_mosaic(truth, piece, 3, 100, 100, 50, 50, (0, 0, 0, 0), False)
    np.testing.assert_allclose(truth[2], [.8, .8, .1, .1, 2], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# mosaic
# ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def four_scenes(tmp_path):
    """Four images, two rectangles each (classes 2p and 2p+1 in image p), some near the borders."""
    folder = tmp_path / "images"
    return [write_scene(folder, "a", (160, 120), {0: (10, 10, 60, 50), 1: (100, 70, 150, 115)}),
            write_scene(folder, "b", (120, 160), {2: (5, 100, 50, 155), 3: (70, 10, 115, 60)}),
            write_scene(folder, "c", (200, 100), {4: (80, 30, 120, 70), 5: (150, 5, 195, 45)}),
            write_scene(folder, "d", (100, 100), {6: (0, 0, 40, 40), 7: (55, 50, 100, 100)})]


@pytest.mark.parametrize("bound", [False, True])
def test_mosaic_boxes_follow_their_quarters(four_scenes, bound):
    """Each rectangle visible in the mosaic has one box, over its pixels; where the rectangle is cut by a quarter
    border, mosaic_bound=1 ends the box there, mosaic_bound=0 may leave it past the border (the fork estimates the
    padding it skips with the image's width, not the crop's, and does not clip to the quarter)."""
    opt = plain_options(jitter=0.2, flip=True, mosaic=True, mosaic_bound=bound)
    w, h = 128, 96
    tol = 2.0   # crops zoom in up to 1.8x here (see test_random_crops_follow_the_pixels)
    cut_by_quarter = dropped = 0
    for seed in range(8):
        image, truth = A.load_mosaic_image(four_scenes, w, h, opt, np.random.default_rng(seed))
        assert image.shape == (3, h, w) and truth.shape == (20, 5)
        first = np.random.default_rng(seed)   # the cut point: the generator's first two draws
        cut_x, cut_y = int(first.integers(25, 103)), int(first.integers(19, 77))
        classes = [int(c) for c in boxes_of(truth)[:, 4]]
        assert len(classes) == len(set(classes)), f"a rectangle has two boxes: {classes}"
        for cls, colour in enumerate(COLOURS):
            found, count = colour_box(image, colour)
            rows = [row for row in boxes_of(truth) if int(row[4]) == cls]
            if found is not None and found[1] - found[0] >= 3 and found[3] - found[2] >= 3:
                assert rows, f"seed {seed}, class {cls}: visible at {found} ({count} px) but no box"
            if not rows:
                dropped += 1
                continue
            assert found is not None, f"seed {seed}, class {cls}: a box over no pixel of its colour"
            piece = cls // 2
            quarter = (0, cut_x) if piece in (0, 2) else (cut_x, w)
            quarter += (0, cut_y) if piece in (0, 1) else (cut_y, h)
            assert quarter[0] <= found[0] and found[1] <= quarter[1] and quarter[2] <= found[2] \
                and found[3] <= quarter[3], f"seed {seed}, class {cls}: pixels outside the quarter"
            edges = box_edges(rows[0], w, h)
            for side, (edge, pixels, border) in enumerate(zip(edges, found, quarter)):
                outwards = -1 if side in (0, 2) else 1
                at_cut = border not in (0, w, h) and abs(pixels - border) <= tol
                if bound:   # whole pixels, never past the quarter
                    assert (edge - border) * outwards <= 1e-4, f"seed {seed}, class {cls}: {edges} vs {quarter}"
                if at_cut and not bound:   # covers the pixels, perhaps past the cut
                    assert (edge - pixels) * outwards >= -tol, f"seed {seed}, class {cls}: {edges} vs {found}"
                else:
                    assert abs(edge - pixels) <= tol, f"seed {seed}, class {cls}: box {edges}, pixels {found}"
                cut_by_quarter += at_cut and (edge - border) * outwards > -1
    assert cut_by_quarter and dropped   # the seeds do exercise rectangles cut by a quarter and left out


def test_mosaic_quarters_come_from_the_images_next_to_the_cut(four_scenes):
    # no jitter, no flip: each image is stretched to the whole network; quarter p shows image p's part that
    # touches the cut point, so the mosaic is a copy of the four stretched images in their quarters
    opt = plain_options(jitter=0.0, mosaic=True)
    w, h = 64, 48
    image, _ = A.load_mosaic_image(four_scenes, w, h, opt, FixedRng(0.5, k=0))
    cut_x, cut_y = 12, 9   # FixedRng: the lowest cut, a fifth of the size
    whole = [A.load_piece(p, w, h, opt, FixedRng(0.5))[0] for p in four_scenes]
    np.testing.assert_array_equal(image[:, :cut_y, :cut_x], whole[0][:, h - cut_y:, w - cut_x:])
    np.testing.assert_array_equal(image[:, :cut_y, cut_x:], whole[1][:, h - cut_y:, :w - cut_x])
    np.testing.assert_array_equal(image[:, cut_y:, :cut_x], whole[2][:, :h - cut_y, w - cut_x:])
    np.testing.assert_array_equal(image[:, cut_y:, cut_x:], whole[3][:, :h - cut_y, :w - cut_x])


# ---------------------------------------------------------------------------------------------------------
# colour, blur and noise kernels against OpenCV
# ---------------------------------------------------------------------------------------------------------

def test_hsv_distortion_is_opencvs_8bit_hsv():
    """OpenCV's, on this CPU: its 8-bit HSV to RGB truncates each row in blocks of its vectors' width and rounds
    the rest (train.data_ab.opencv_hsv_block tells the width). The image is 50 pixels wide: truncated up to 32
    (AVX2), or rounded throughout (AVX-512's 64). Measured on a Zen 3 EPYC (AVX2): 1 value in 6000 off by one,
    where the vector loop's compiled arithmetic differs from the kernel's in a last bit."""
    from pydarknet.tasks.train.data_ab import opencv_hsv_block
    block = opencv_hsv_block()
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    rgb[0, :6] = [[0, 0, 0], [255, 255, 255], [7, 7, 7], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    for dhue, dsat, dexp in [(0.1, 1.5, 0.7), (-0.2, 0.6, 1.4), (0.45, 1.0, 1.0)]:
        # the fork's Mat += / *= (convertTo): in float32, rounded to even, saturated to 0..255
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] += np.float32(179 * np.float32(dhue))
        hsv[..., 1] *= np.float32(dsat)
        hsv[..., 2] *= np.float32(dexp)
        expected = cv2.cvtColor(np.clip(np.rint(hsv), 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
        got = K.distort_hsv_u8(np.ascontiguousarray(rgb.transpose(2, 0, 1)), np.float32(dhue), np.float32(dsat),
                               np.float32(dexp), block).transpose(1, 2, 0)
        diff = np.abs(got.astype(int) - expected)
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999, np.argwhere(diff)[:5]
        other = K.distort_hsv_u8(np.ascontiguousarray(rgb.transpose(2, 0, 1)), np.float32(dhue), np.float32(dsat),
                                 np.float32(dexp), 16 if block != 16 else 0).transpose(1, 2, 0)
        assert not np.array_equal(other, expected)   # another width's reading differs on these pixels


def test_blur_is_opencvs_gaussian_and_blur_1_keeps_boxes_sharp():
    rng = np.random.default_rng(1)
    im = rng.integers(0, 256, (3, 40, 60), dtype=np.uint8)
    aug = A.Augmentation(0, 0, 0, 0, 0, 0, False, np.float32(0), np.float32(1), np.float32(1), 0, 0)
    truth = np.zeros((2, 5), np.float32)
    truth[0] = [.5, .5, .5, .5, 0]   # pixels 15..44 x 10..29
    for ksize, blur in [(5, 4), (17, 1)]:
        expected = cv2.GaussianBlur(np.ascontiguousarray(im.transpose(1, 2, 0)), (ksize, ksize), 0)
        got = A.augment_image(im, 60, 40, 0, 0, 60, 40, aug, blur, truth, rng)
        if blur == 1:
            np.testing.assert_array_equal(got[:, 10:30, 15:45], im[:, 10:30, 15:45])
            got[:, 10:30, 15:45] = expected.transpose(2, 0, 1)[:, 10:30, 15:45]
        assert np.abs(got.astype(int) - expected.transpose(2, 0, 1)).max() <= 1


def test_gaussian_noise_only_brightens_and_saturates():
    im = np.array([[[10, 250, 100, 0]]], np.uint8)
    noise = np.array([[[-30.0, 20.0, 2.6, 0.4]]], np.float32)
    np.testing.assert_array_equal(K.add_noise_u8(im, noise), [[[10, 255, 103, 0]]])


# ---------------------------------------------------------------------------------------------------------
# batches, datasets, dispatch
# ---------------------------------------------------------------------------------------------------------

NET = """[net]
batch=4
subdivisions=1
channels=3
hue=.1
saturation=1.5
exposure=1.5
max_batches=10
{extra}

[convolutional]
filters={filters}
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0
anchors=10,10
classes={classes}
num=1
jitter=.3
{yolo_extra}
"""


def network(tmp_path, extra="", yolo_extra="", classes=8, size="width=64\nheight=48"):
    cfg = tmp_path / "net.cfg"
    cfg.write_text(NET.format(extra=f"{size}\n{extra}", yolo_extra=yolo_extra, classes=classes,
                              filters=classes + 5))
    return Network(cfg, quiet_unused=True)


def test_fork_batches_are_reproducible_and_in_range(tmp_path, four_scenes):
    net = network(tmp_path, "mosaic=1\nblur=1\ngaussian_noise=10\nflip=1", "resize=1.5")
    ds = detection_dataset(net, four_scenes, 8)
    assert isinstance(ds, A.DetectionDatasetAB) and ds.options.mosaic and ds.options.resize == 1.5
    x, y = ds.load_batch(6, D.batch_rng(5, 3))
    x2, y2 = ds.load_batch(6, D.batch_rng(5, 3))
    x3, _ = ds.load_batch(6, D.batch_rng(5, 4))
    assert x.shape == (6, 3, 48, 64) and x.dtype == np.float32 and y.shape == (6, 200, 5)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, x3)
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(x * 255, np.rint(x * 255), atol=1e-4)   # 8-bit levels, as the fork's Mats
    for truth in y:
        filled = truth[:, 0] != 0
        assert filled[:filled.sum()].all() and not truth[filled.sum():].any()
        boxes = truth[filled]
        assert ((boxes[:, :4] > 0) & (boxes[:, :4] <= 1)).all() and set(boxes[:, 4]) <= set(range(8))
    xs, _ = ds.load_batch(2, np.random.default_rng(0), size=(32, 32))   # random=1's resizing
    assert xs.shape == (2, 3, 32, 32)
    with D.BatchLoader(ds, 2, seed=9, workers=1) as threaded, D.BatchLoader(ds, 2, seed=9, workers=0) as serial:
        for _ in range(2):
            a, b = next(threaded), next(serial)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


def test_pjreddie_networks_keep_pjreddies_pipeline(tmp_path, four_scenes):
    net = network(tmp_path)
    assert net.darknet == "pjreddie"
    ds = detection_dataset(net, four_scenes, 8)
    assert type(ds) is D.DetectionDataset
    x, y = ds.load_batch(3, np.random.default_rng(4))
    # what train.make_dataset built before the fork's pipeline existed
    old = D.DetectionDataset(four_scenes, net.w, net.h, max_boxes=net.layers[-1].max_boxes, classes=8,
                             jitter=net.layers[-1].jitter, hue=net.hue, saturation=net.saturation,
                             exposure=net.exposure)
    x_old, y_old = old.load_batch(3, np.random.default_rng(4))
    np.testing.assert_array_equal(x, x_old)
    np.testing.assert_array_equal(y, y_old)
    assert y.shape == (3, 90, 5)


@pytest.mark.parametrize("extra, option", [("track=1", "track=1"), ("mixup=1", "mixup=1"),
                                           ("cutmix=1", "cutmix=1"), ("mosaic=1\nletter_box=1", "letter_box=1")])
def test_unsupported_fork_options_are_refused_in_one_line(tmp_path, extra, option):
    net = network(tmp_path, extra)
    with pytest.raises(DarknetError) as e:
        detection_dataset(net, ["x.jpg"], 8)
    message = str(e.value)
    assert "\n" not in message and f"[net] {option}" in message and f"{tmp_path / 'net.cfg'}:" in message


def test_fork_net_options_are_parsed(tmp_path):
    net = network(tmp_path, "mosaic=1\nmosaic_bound=1\nflip=0\nblur=3\ngaussian_noise=20\nema_alpha=.9998")
    assert (net.mosaic, net.mosaic_bound, net.flip, net.blur, net.gaussian_noise) == (1, 1, 0, 3, 20)
    assert net.ema_alpha == pytest.approx(0.9998) and net.track == 0 and net.letter_box == 0
    assert network(tmp_path).flip == 1 and network(tmp_path).ema_alpha == 0


def test_shapes_batch_with_yolov4_tiny_options(tmp_path):
    shapes = shared_path("datasets", "shapes")
    net = network(tmp_path, "mosaic=1\nblur=1\ngaussian_noise=10", "resize=1.5", classes=3,
                  size="width=160\nheight=160")
    ds = detection_dataset(net, L.read_list(shapes / "train.txt"), 3)
    x, y = ds.load_batch(4, np.random.default_rng(0))
    assert x.shape == (4, 3, 160, 160) and y.shape == (4, 200, 5)
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.05
    boxes = y[y[:, :, 0] != 0]
    assert len(boxes) >= 4 and set(boxes[:, 4]) <= {0, 1, 2}
    assert (boxes[:, 2:4] >= np.float32(1 / 160)).all() and (boxes[:, :4] <= 1).all()
