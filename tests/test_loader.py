"""The background batch loader: batches made in threads while the step runs are exactly the serial ones.

Batch i is drawn with ``batch_rng(seed, i)`` whoever makes it, so loading in the background (as darknet's
load thread does) must change nothing but the time: the same x and y arrays as ``workers=0`` (each batch made
in ``next()`` itself, in series) and the same printed losses for a short training run.
"""
import re

import cv2
import numpy as np
import pytest

from conftest import shared_path
from test_train_cli import CFG as TRAIN_CFG
from pydarknet.files import labels as L
from pydarknet.tasks.train import data as D
from pydarknet.files import image
from pydarknet.files.jpeg import baseline, color, huffman, idct, progressive
from pydarknet.kernels import augment
from pydarknet.tasks.train.run import TrainingRun


# test_train_cli's toy detector, with pjreddie's colour augmentation on and more jitter
CFG = TRAIN_CFG.replace("decay=0.0005\n", "decay=0.0005\nhue=.1\nsaturation=1.5\nexposure=1.5\n").replace(
    "jitter=.1", "jitter=.2")


@pytest.fixture
def jpeg_set(tmp_path):
    """Six JPEGs (decoded by pydarknet.files.jpeg, the nogil decoder) of different sizes, with labels."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    names = []
    for i in range(6):
        im = (rng.random((40 + 4 * i, 48 - 2 * i, 3)) * 255).astype(np.uint8)
        cv2.rectangle(im, (10, 8), (30, 28), (255, 255, 255), -1)
        cv2.imwrite(str(tmp_path / "images" / f"{i}.jpg"), im)
        (tmp_path / "labels" / f"{i}.txt").write_text(f"{i % 2} 0.42 0.45 0.42 0.5\n1 0.7 0.6 0.2 0.3\n")
        names.append(str(tmp_path / "images" / f"{i}.jpg"))
    (tmp_path / "train.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "names.txt").write_text("a\nb\n")
    (tmp_path / "toy.data").write_text(f"classes=2\ntrain={tmp_path / 'train.txt'}\nnames={tmp_path / 'names.txt'}\n"
                                       f"backup={tmp_path / 'backup'}\n")
    (tmp_path / "toy.cfg").write_text(CFG)
    return tmp_path


def _dataset(root):
    return D.DetectionDataset(L.read_list(root / "train.txt"), 32, 32, max_boxes=4, classes=2, jitter=.2, hue=.1,
                              saturation=1.5, exposure=1.5)


def test_loading_kernels_release_the_gil():
    """The decode and augmentation kernels run beside the training step only if they drop the GIL."""
    kernels = [huffman._build_huffman, huffman._fill, baseline._decode_baseline_scan, progressive._decode_dc_first_scan,
               progressive._decode_dc_refine_scan, progressive._decode_ac_first_scan,
               progressive._decode_ac_refine_scan, idct._idct_all, color._assemble,
               image._unit_planes, image._resize, augment.place_image, augment.distort_image, augment.flip_image,
               augment.rotate_crop]
    held = [k.__name__ for k in kernels if not k.targetoptions.get("nogil")]
    assert not held, f"these loading kernels hold the GIL: {held}"


@pytest.mark.parametrize("workers", [1, 2])
def test_threaded_batches_are_the_serial_ones(jpeg_set, workers):
    ds = _dataset(jpeg_set)
    expected = [ds.load_batch(4, D.batch_rng(7, i)) for i in range(4)]
    with D.BatchLoader(ds, 4, seed=7, workers=0) as serial:
        assert serial.serial and not serial._threads
        made = [next(serial) for _ in range(4)]
    with D.BatchLoader(ds, 4, seed=7, workers=workers, prefetch=3) as threads:
        background = [next(threads) for _ in range(4)]
    for (x0, y0), (x1, y1), (x2, y2) in zip(expected, made, background):
        assert x0.shape == (4, 3, 32, 32) and y0.shape == (4, 4, 5)
        np.testing.assert_array_equal(x1, x0)
        np.testing.assert_array_equal(y1, y0)
        np.testing.assert_array_equal(x2, x0)
        np.testing.assert_array_equal(y2, y0)
    assert not any(t.is_alive() for t in threads._threads)


def test_threaded_batches_after_set_size_are_the_serial_ones(jpeg_set):
    ds = _dataset(jpeg_set)
    with D.BatchLoader(ds, 2, seed=3, workers=0) as serial, D.BatchLoader(ds, 2, seed=3, workers=2) as threads:
        for size in (None, (48, 40), (32, 64)):
            if size:
                serial.set_size(*size)
                threads.set_size(*size)
            for _ in range(2):
                (x1, y1), (x2, y2) = next(serial), next(threads)
                if size:
                    assert x1.shape == (2, 3, size[1], size[0])
                np.testing.assert_array_equal(x1, x2)
                np.testing.assert_array_equal(y1, y2)


def test_serial_loader_raises_the_file_name(tmp_path):
    ds = D.DetectionDataset([str(tmp_path / "gone.jpg")], 32, 32)
    with D.BatchLoader(ds, 1, workers=0) as loader:
        with pytest.raises(D.DarknetError, match="gone.jpg"):
            next(loader)


class ThreadsSeen:
    """A dataset whose batch is the thread that made it and how many kernel threads its Numba kernels would get."""
    def load_batch(self, n, rng, size=None):
        import threading

        import numba
        return threading.current_thread().name, numba.get_num_threads()


def test_the_loaders_threads_run_their_kernels_on_themselves_alone():
    """A loader thread's decode and augmentation kernels run on it alone: a kernel team of its own would share the
    cores with the training step's, whose threads then wait at every layer (shapes-tiny's iterations 0.235-0.243
    -> 0.212-0.218 s on 2 cores)."""
    import numba
    threads = numba.get_num_threads()
    with D.BatchLoader(ThreadsSeen(), 2, workers=2) as loader:
        seen = [next(loader) for _ in range(4)]
    assert all(name.startswith("pydarknet-loader-") and kernels == 1 for name, kernels in seen), seen
    assert numba.get_num_threads() == threads


LOSS = re.compile(r"^(\d+): (\S+), (\S+) avg, (\S+) rate, [\d.]+ seconds, (\d+) images$")


def _losses(data, cfg, backup, workers, max_batches=None, seed=0):
    """The printed lines of a short run without the seconds (the only field allowed to differ)."""
    class Out:
        def __init__(self):
            self.text = []

        def write(self, s):
            self.text.append(s)

        def flush(self):
            pass
    out = Out()
    run = TrainingRun(str(data), str(cfg), backup=str(backup), workers=workers, seed=seed, chart=False, out=out,
                      max_batches=max_batches)
    run.net.quiet = True
    run.run()
    lines = [line for line in "".join(out.text).splitlines() if line]
    parsed = [LOSS.match(line) for line in lines]
    assert all(parsed), lines
    return [m.groups() for m in parsed]


def test_training_prints_the_same_losses_serial_and_background(jpeg_set):
    serial = _losses(jpeg_set / "toy.data", jpeg_set / "toy.cfg", jpeg_set / "b0", workers=0)
    assert [int(g[0]) for g in serial] == [1, 2, 3, 4]
    for workers in (1, 2):
        assert _losses(jpeg_set / "toy.data", jpeg_set / "toy.cfg", jpeg_set / f"b{workers}", workers) == serial


def test_golden_job_prints_the_same_losses_serial_and_background(tmp_path):
    shapes = shared_path("datasets", "shapes", "shapes.data")
    golden_cfg = shared_path("golden", "map", "shapes-tiny.cfg")
    serial = _losses(shapes, golden_cfg, tmp_path / "s", workers=0, max_batches=3, seed=2)
    background = _losses(shapes, golden_cfg, tmp_path / "t", workers=2, max_batches=3, seed=2)
    assert len(serial) == 3 and background == serial
