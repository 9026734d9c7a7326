"""pydarknet.files.labels and pydarknet.tasks.train.data: darknet's dataset layout (lists, label locations, label
files) and training batches."""
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import shared_path
from pydarknet.files import labels as L
from pydarknet.tasks.train import data as D
from pydarknet.files.config import DarknetError, chatter
from pydarknet.kernels import augment as K


@pytest.fixture(autouse=True)
def _loud():
    quiet = chatter["quiet"]
    chatter["quiet"] = False
    yield
    chatter["quiet"] = quiet


def touch(path, text=""):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def warnings_in(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("Warning:")]


class FixedRng:
    """Stands in for a numpy Generator: random() is always `u`, integers() always 0 (no flip, first pick,
    no label shuffling)."""

    def __init__(self, u=0.5):
        self.u = u

    def random(self):
        return self.u

    def integers(self, n, size=None):
        return 0 if size is None else np.zeros(size, np.int64)


# ---------------------------------------------------------------------------------------------------------
# label locations
# ---------------------------------------------------------------------------------------------------------

def test_label_path_darknet_rules(tmp_path):
    for image, label in [("d/images/a.jpg", "d/labels/a.txt"),
                         ("v/JPEGImages/b.JPEG", "v/labels/b.txt"),
                         ("c/images/train/c.png", "c/labels/train/c.txt"),
                         ("e/raw/e.JPG", "e/labels/e.txt")]:
        touch(tmp_path / label)
        assert L.label_path(str(tmp_path / image)) == str(tmp_path / label)


def test_label_path_falls_back_beside_the_image(tmp_path):
    image = tmp_path / "set" / "images" / "x.jpeg"
    touch(tmp_path / "set" / "images" / "x.txt")
    assert L.label_path(str(image)) == str(tmp_path / "set" / "images" / "x.txt")
    for ext in (".bmp", ".png", ".JPG"):
        touch(tmp_path / "flat" / "y.txt")
        assert L.label_path(str(tmp_path / "flat" / f"y{ext}")) == str(tmp_path / "flat" / "y.txt")


def test_label_path_prefers_darknets_location(tmp_path):
    touch(tmp_path / "images" / "z.txt")
    touch(tmp_path / "labels" / "z.txt")
    assert L.label_path(str(tmp_path / "images" / "z.jpg")) == str(tmp_path / "labels" / "z.txt")


def test_label_path_whole_folder_names(tmp_path):
    # darknet's substring replacement turns "drawings" into "dlabelsings"; whole folder names still work
    touch(tmp_path / "drawings" / "labels" / "q.txt")
    assert L.label_path(str(tmp_path / "drawings" / "images" / "q.jpg")) == \
        str(tmp_path / "drawings" / "labels" / "q.txt")


def test_label_path_missing_everywhere_gives_darknets_location():
    assert L.label_path("/nowhere/images/k.jpg") == "/nowhere/labels/k.txt"


def test_shapes_labels_sit_beside_the_images():
    shapes = shared_path("datasets", "shapes")
    paths = L.read_list(shapes / "train.txt")
    assert len(paths) == 600
    assert L.label_path(paths[0]) == str(shapes / "images" / "train_0000.txt")


# ---------------------------------------------------------------------------------------------------------
# label files
# ---------------------------------------------------------------------------------------------------------

def test_read_labels_order_and_values(tmp_path):
    f = touch(tmp_path / "a.txt", "2 0.5 0.25 0.2 0.1\n\n0 0.1 0.9 0.05 0.3\n")
    labels = L.read_labels(f, classes=3)
    assert labels.dtype == np.float32 and labels.shape == (2, 5)
    np.testing.assert_array_equal(labels, np.array([[.5, .25, .2, .1, 2], [.1, .9, .05, .3, 0]], np.float32))


def test_read_labels_skips_bad_lines_naming_file_and_line(tmp_path, capsys):
    lines = [
        "0 0.5 0.5 0.2 0.2",        # 1 good
        "1 0.5 0.5 0.2",            # 2 too few fields
        "x 0.5 0.5 0.2 0.2",        # 3 class not an integer
        "3 0.5 0.5 0.2 0.2",        # 4 class out of range (classes=3)
        "1 0.5 nan 0.2 0.2",        # 5 not finite
        "1 0.5 0.5 0 0.2",          # 6 zero width
        "1 0.5 0.5 0.2 1.5",        # 7 taller than the image
        "1 1.2 0.5 0.2 0.2",        # 8 centre outside
        "1 0.5 0.5 abc 0.2",        # 9 unparseable number
        "-1 0.5 0.5 0.2 0.2",       # 10 negative class
        "1 0 0 0.2 0.2",            # 11 darknet's "no box" sentinel
        "2 0.95 0.05 0.3 0.3",      # 12 good: sticks out, clamped at training time
        "1 0.5 0.5 0.2 0.2 7",      # 13 extra field
    ]
    f = touch(tmp_path / "bad.txt", "\n".join(lines) + "\n")
    labels = L.read_labels(f, classes=3)
    np.testing.assert_array_equal(labels[:, 4], [0, 2])
    warnings = warnings_in(capsys)
    assert len(warnings) == 11
    for number, warning in zip([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13], warnings):
        assert f"{f}:{number}:" in warning
        assert "skipped" in warning


def test_read_labels_without_classes_accepts_any_class(tmp_path):
    f = touch(tmp_path / "a.txt", "17 0.5 0.5 0.2 0.2\n")
    assert L.read_labels(f)[0, 4] == 17


def test_missing_label_file_is_empty_with_one_warning(tmp_path, capsys):
    labels = L.read_labels(tmp_path / "none.txt", classes=2)
    assert labels.shape == (0, 5) and labels.dtype == np.float32
    warnings = warnings_in(capsys)
    assert len(warnings) == 1 and str(tmp_path / "none.txt") in warnings[0]


def test_warned_set_silences_repeats(tmp_path, capsys):
    warned = set()
    f = touch(tmp_path / "a.txt", "9 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")
    for _ in range(3):
        assert len(L.read_labels(f, 2, warned)) == 1
        L.read_labels(tmp_path / "missing.txt", 2, warned)
    assert len(warnings_in(capsys)) == 2


# ---------------------------------------------------------------------------------------------------------
# image lists
# ---------------------------------------------------------------------------------------------------------

def test_read_list_resolution(tmp_path, monkeypatch):
    data = tmp_path / "data"
    touch(data / "images" / "a.jpg")
    touch(data / "images" / "b.jpg")
    cwd = tmp_path / "run"
    touch(cwd / "images" / "b.jpg")                    # b exists relative to the working directory too
    touch(data / "list.txt", "images/a.jpg\r\n\n  images/b.jpg  \n/abs/c.jpg\nimages/missing.jpg\n")
    monkeypatch.chdir(cwd)
    paths = L.read_list(data / "list.txt")
    assert paths == [str(data / "images" / "a.jpg"), "images/b.jpg", "/abs/c.jpg", "images/missing.jpg"]


def test_read_list_missing_names_file_and_data_line(tmp_path):
    with pytest.raises(DarknetError) as e:
        L.read_list(tmp_path / "nope.txt", where="x.data:2")
    assert str(tmp_path / "nope.txt") in str(e.value) and "x.data:2" in str(e.value)


# ---------------------------------------------------------------------------------------------------------
# box arithmetic
# ---------------------------------------------------------------------------------------------------------

def test_correct_boxes_shift_scale_flip_clamp():
    boxes = np.array([[.5, .5, .2, .4, 1], [.9, .1, .4, .4, 2]], np.float32)
    same = D.correct_boxes(boxes, 0, 0, 1, 1, False)
    np.testing.assert_allclose(same[0], boxes[0], atol=1e-7)
    # second box clamped to the image: x 0.7..1, y 0..0.3
    np.testing.assert_allclose(same[1], [.85, .15, .3, .3, 2], atol=1e-6)
    flipped = D.correct_boxes(boxes, 0, 0, 1, 1, True)
    np.testing.assert_allclose(flipped[:, 0], [.5, .15], atol=1e-6)
    moved = D.correct_boxes(boxes[:1], -0.25, 0, 0.5, 1, False)    # image squeezed into the right half
    np.testing.assert_allclose(moved[0], [.5, .5, .1, .4, 1], atol=1e-6)
    assert moved.dtype == np.float32


def test_fill_truth_truncates_then_drops_tiny_boxes():
    labels = np.array([[.5, .5, .0005, .2, 0], [.5, .5, .2, .2, 1], [.3, .3, .1, .1, 2]], np.float32)
    truth = D.fill_truth_detection(labels, 2, False, 0, 0, 1, 1, FixedRng())
    # randomize_boxes swapping each row with row 0 gives rows 2, 0, 1; darknet keeps the first max_boxes (2)
    # of those, then drops the thin one: a single truth remains although row 1 was a valid box
    assert truth.shape == (2, 5)
    np.testing.assert_allclose(truth[0], labels[2], atol=1e-7)
    assert not truth[1].any()


def test_randomize_boxes_is_a_permutation():
    rows = np.arange(50, dtype=np.float32).reshape(10, 5)
    out = D.randomize_boxes(rows.copy(), np.random.default_rng(1))
    assert sorted(map(tuple, out)) == sorted(map(tuple, rows))


# ---------------------------------------------------------------------------------------------------------
# detection batches
# ---------------------------------------------------------------------------------------------------------

def write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


@pytest.fixture
def tiny_set(tmp_path):
    """Two lossless images with labels beside them: a 64x64 square and a 64x32 landscape."""
    rng = np.random.default_rng(3)
    square = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    wide = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    write_png(tmp_path / "images" / "sq.png", square)
    write_png(tmp_path / "images" / "wide.png", wide)
    touch(tmp_path / "images" / "sq.txt", "0 0.5 0.5 0.5 0.25\n1 0.25 0.75 0.2 0.2\n2 0.9 0.9 0.4 0.4\n")
    touch(tmp_path / "images" / "wide.txt", "1 0.5 0.5 0.5 0.5\n")
    touch(tmp_path / "train.txt", "images/sq.png\nimages/wide.png\n")
    return tmp_path, square.astype(np.float32) / 255, wide.astype(np.float32) / 255


def test_detection_image_without_jitter_keeps_image_and_boxes(tiny_set):
    root, square, _ = tiny_set
    path = str(root / "images" / "sq.png")
    x, y = D.load_detection_image(path, 64, 64, 5, 0.0, 0.0, 1.0, 1.0, np.random.default_rng(0), flip=False)
    assert x.shape == (3, 64, 64) and y.shape == (5, 5) and x.dtype == y.dtype == np.float32
    np.testing.assert_allclose(x, square.transpose(2, 0, 1), atol=2e-5)
    expected = np.array([[.5, .5, .5, .25, 0], [.25, .75, .2, .2, 1], [.85, .85, .3, .3, 2]], np.float32)
    got = y[:3][np.argsort(y[:3, 4])]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not y[3:].any()


def test_detection_image_placement_exact(tiny_set):
    root, _, wide = tiny_set
    # aspect 2 into 64x64: the image is 64x32, placed at dy = 0.5 * (64 - 32) = 16 by the fixed generator
    x, y = D.load_detection_image(str(root / "images" / "wide.png"), 64, 64, 3, 0.0, 0.0, 1.0, 1.0, FixedRng(),
                                  classes=2)
    assert (x[:, :16] == 0.5).all() and (x[:, 48:] == 0.5).all()
    np.testing.assert_allclose(x[:, 16:47], wide.transpose(2, 0, 1)[:, :31], atol=2e-5)
    np.testing.assert_allclose(y[0], [.5, .5, .5, .25, 1], atol=1e-6)
    assert not y[1:].any()


def test_detection_batch_deterministic_and_bounded(tiny_set):
    root, _, _ = tiny_set
    paths = L.read_list(root / "train.txt")
    ds = D.DetectionDataset(paths, 48, 40, max_boxes=4, classes=3, jitter=0.3, hue=0.1, saturation=1.5,
                            exposure=1.5)
    x1, y1 = ds.load_batch(6, np.random.default_rng(7))
    x2, y2 = ds.load_batch(6, np.random.default_rng(7))
    x3, _ = ds.load_batch(6, np.random.default_rng(8))
    assert x1.shape == (6, 3, 40, 48) and y1.shape == (6, 4, 5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert 0 <= x1.min() and x1.max() <= 1
    boxes = y1[y1[:, :, 2] > 0]
    assert len(boxes) and (boxes[:, :4] >= 0).all() and (boxes[:, :4] <= 1).all()
    assert set(np.unique(boxes[:, 4])) <= {0, 1, 2}
    # zero rows only after the last box of each image
    for truth in y1:
        filled = truth[:, 2] > 0
        assert filled[:filled.sum()].all() and not truth[filled.sum():].any()


def test_shapes_batch_has_darknets_truth_layout():
    shapes = shared_path("datasets", "shapes")
    golden = np.load(shared_path("golden", "train", "yolov3-tiny_train", "y.npy"))
    ds = D.DetectionDataset(L.read_list(shapes / "train.txt"), 160, 160, max_boxes=golden.shape[1], classes=3,
                            jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5)
    x, y = ds.load_batch(4, np.random.default_rng(0))
    assert x.shape == (4, 3, 160, 160) and y.shape[1:] == golden.shape[1:] and y.dtype == golden.dtype


# ---------------------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------------------

def test_flip_and_neutral_distortion():
    im = np.random.default_rng(0).random((3, 5, 7)).astype(np.float32)
    flipped = K.flip_image(im.copy())
    np.testing.assert_array_equal(flipped, im[:, :, ::-1])
    out = K.distort_image(im.copy(), np.float32(0), np.float32(1), np.float32(1))
    np.testing.assert_allclose(out, im, atol=1e-6)
    grey = np.full((3, 2, 2), 0.25, np.float32)
    np.testing.assert_array_equal(K.distort_image(grey.copy(), np.float32(.3), np.float32(2), np.float32(2)),
                                  np.full((3, 2, 2), 0.5, np.float32))


def test_hue_shift_rotates_primaries():
    red = np.zeros((3, 1, 1), np.float32)
    red[0] = 1
    green = K.distort_image(red.copy(), np.float32(1 / 3), np.float32(1), np.float32(1))
    np.testing.assert_allclose(green[:, 0, 0], [0, 1, 0], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# classifier batches
# ---------------------------------------------------------------------------------------------------------

def test_classification_batch(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = []
    for name in ("cat_1", "dog_1", "cat_2"):
        write_png(tmp_path / f"{name}.png", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
        paths.append(str(tmp_path / f"{name}.png"))
    ds = D.ClassificationDataset(paths, ["cat", "dog"], 24, min_crop=24, max_crop=32, angle=10, aspect=1.2,
                                 hue=.1, saturation=1.5, exposure=1.5)
    x, y = ds.load_batch(8, np.random.default_rng(2))
    assert x.shape == (8, 3, 24, 24) and y.shape == (8, 2)
    assert (y.sum(axis=1) == 1).all()
    x2, y2 = ds.load_batch(8, np.random.default_rng(2))
    np.testing.assert_array_equal(x, x2)
    centre = D.ClassificationDataset(paths, ["cat", "dog"], 16, center=True, flip=False)
    xc, yc = centre.load_batch(3, np.random.default_rng(0))
    assert xc.shape == (3, 3, 16, 16)
    assert not warnings_in(capsys)
    # the part nearest the file name decides (the folder of this test contains "cat" too)
    np.testing.assert_array_equal(y.sum(axis=0) > 0, [True, True])
    np.testing.assert_array_equal(D.class_truth("/cats/dog_3.png", ["cat", "dog"]), [0, 1])
    np.testing.assert_array_equal(D.class_truth("/x/wildcat.png", ["cat", "wildcat"]), [0, 1])
    assert not warnings_in(capsys)
    np.testing.assert_array_equal(D.class_truth("/x/catdog.png", ["cat", "dog"]), [1, 0])
    assert "2 class labels" in warnings_in(capsys)[0]
    np.testing.assert_array_equal(D.class_truth("/x/bird.png", ["cat", "dog"]), [0, 0])
    assert "no class label" in warnings_in(capsys)[0]


# ---------------------------------------------------------------------------------------------------------
# the background loader
# ---------------------------------------------------------------------------------------------------------

def test_loader_is_deterministic_for_a_seed(tiny_set):
    root, _, _ = tiny_set
    ds = D.DetectionDataset(L.read_list(root / "train.txt"), 32, 32, max_boxes=3, jitter=.2, hue=.1)
    with D.BatchLoader(ds, 2, seed=11, workers=1) as a:
        first = [next(a) for _ in range(4)]
    with D.BatchLoader(ds, 2, seed=11, workers=2, prefetch=3) as b:
        second = [next(b) for _ in range(4)]
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    with D.BatchLoader(ds, 2, seed=12) as c:
        assert not np.array_equal(next(c)[0], first[0][0])


def test_loader_shuts_down_cleanly(tiny_set):
    root, _, _ = tiny_set
    ds = D.DetectionDataset(L.read_list(root / "train.txt"), 32, 32)
    before = threading.active_count()
    loader = D.BatchLoader(ds, 2, workers=2, prefetch=4)
    next(loader)
    loader.close()
    assert not any(t.is_alive() for t in loader._threads)
    assert threading.active_count() == before
    with pytest.raises(DarknetError, match="closed"):
        next(loader)
    loader.close()  # twice is fine


def test_loader_set_size(tiny_set):
    root, _, _ = tiny_set
    ds = D.DetectionDataset(L.read_list(root / "train.txt"), 32, 32)
    with D.BatchLoader(ds, 2, prefetch=3) as loader:
        assert next(loader)[0].shape == (2, 3, 32, 32)
        loader.set_size(48, 40)
        assert next(loader)[0].shape == (2, 3, 40, 48)
        assert next(loader)[0].shape == (2, 3, 40, 48)


def test_loader_propagates_errors_with_the_file_name(tmp_path):
    bad = touch(tmp_path / "broken.jpg", "not an image")
    ds = D.DetectionDataset([str(tmp_path / "gone.jpg")], 32, 32)
    with D.BatchLoader(ds, 1) as loader:
        with pytest.raises(DarknetError, match="gone.jpg"):
            next(loader)
    ds = D.DetectionDataset([str(bad)], 32, 32)
    with D.BatchLoader(ds, 1, workers=2) as loader:
        with pytest.raises(DarknetError, match="broken.jpg"):
            next(loader)
    assert not any(t.is_alive() for t in loader._threads)


def test_loader_in_processes(tiny_set, tmp_path):
    root, _, _ = tiny_set
    ds = D.DetectionDataset(L.read_list(root / "train.txt"), 32, 32, max_boxes=3)
    with D.BatchLoader(ds, 2, seed=5) as threads:
        expected = next(threads)
    with D.BatchLoader(ds, 2, seed=5, processes=True) as procs:
        x, y = next(procs)
    np.testing.assert_array_equal(x, expected[0])
    np.testing.assert_array_equal(y, expected[1])
    assert not any(p.is_alive() for p in procs._procs)
    bad = D.DetectionDataset([str(tmp_path / "nothing.png")], 32, 32)
    with D.BatchLoader(bad, 1, processes=True) as procs:
        with pytest.raises(DarknetError, match="nothing.png"):
            next(procs)
