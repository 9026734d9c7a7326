"""Training batches as pjreddie's data.c makes them: detector and classifier augmentation, the loader threads.

Image lists and label files: pydarknet/files/labels.py. What both pipelines share (darknet's random draws, the
boxes' shuffle and correction, image loading): augment.py.

Batches. ``load_data_detection`` builds a detector batch exactly as pjreddie's data.c does (jitter of the
aspect ratio, random placement on a 0.5-grey canvas, HSV distortion, random flip, labels shuffled, corrected,
clamped and truncated to `max_boxes`): x is (n, 3, h, w) float32, y is (n, max_boxes, 5) float32 with rows
``x y w h class`` and zero rows after the last box. ``load_data_augment`` builds a classifier batch (random
rotation/scale/aspect crop, flip, HSV distortion; one-hot labels from the image path). Randomness comes from
a ``numpy.random.Generator`` passed in, never from a global state: the same generator state gives the same
batch. ``BatchLoader`` prepares batches ahead of time in worker threads (or processes). AlexeyAB networks train
on the fork's pipeline instead (data_ab.py: crop and stretch, mosaic, blur, noise); run.detection_dataset
chooses.

Deliberate differences from darknet, each where darknet would silently train on garbage:

* a label line that does not parse, has a class outside 0..classes-1, a non-finite number, a size <= 0 or
  > 1, or a centre outside 0..1, is skipped with a warning naming ``file:line`` (darknet's fscanf loop stops
  at the first bad token and misreads the rest of the file). A centre at exactly (0, 0) is skipped too:
  darknet's correct_boxes takes it as "no box" and writes a 999999-sized truth.
* a missing label file gives no boxes and a warning (pjreddie's darknet exits).
* label files are also looked for beside the image when darknet's location does not exist.
* classifier labels: one class per image, the label found in the path part nearest the file name (darknet
  sets every entry found anywhere in the path, and only complains); zero or several matches give a warning.
  Hierarchical (tree) labels are not handled here.
"""
import os
import queue
import re
import threading
import traceback

import numpy as np

from ...files.config import DarknetError, warn
from ...files.image import center_crop_image, make_image
from ...files.labels import label_path, read_labels
from ...kernels import augment as K
from ...kernels.threads import one_kernel_thread_here
from .augment import (correct_boxes, load_training_image, naming, nonzero, rand_scale, rand_uniform,
                      randomize_boxes)

__all__ = [
    "randomize_boxes", "correct_boxes", "fill_truth_detection",
    "rand_uniform", "rand_scale", "random_distort_image", "load_detection_image", "load_data_detection",
    "random_augment_image", "class_truth", "load_classification_image", "load_data_augment",
    "DetectionDataset", "ClassificationDataset", "BatchLoader",
]

_F32 = np.float32


def random_distort_image(im, hue, saturation, exposure, rng):
    """darknet's random_distort_image, in place: hue shift in [-hue, hue], saturation and exposure scaled by
    rand_scale. Darknet always runs it (with hue=0, saturation=exposure=1 the HSV round trip still rounds)."""
    dhue = rand_uniform(rng, -hue, hue)
    dsat = rand_scale(rng, saturation)
    dexp = rand_scale(rng, exposure)
    K.distort_image(im, dhue, dsat, dexp)
    return im


# ---------------------------------------------------------------------------------------------------------
# Detection batches (pjreddie's load_data_detection)
# ---------------------------------------------------------------------------------------------------------

def fill_truth_detection(labels, max_boxes, flip, dx, dy, sx, sy, rng):
    """darknet's fill_truth_detection from already-read labels: shuffle (randomize_boxes), correct, keep the
    first `max_boxes` rows, then drop those thinner than .001 (darknet truncates before dropping).
    Returns (max_boxes, 5) float32 rows x y w h class, zero rows after the last box."""
    truth = np.zeros((max_boxes, 5), np.float32)
    boxes = randomize_boxes(np.array(labels, dtype=np.float32, copy=True).reshape(-1, 5), rng)
    boxes = correct_boxes(boxes, dx, dy, sx, sy, flip)[:max_boxes]
    keep = (boxes[:, 2].astype(np.float64) >= .001) & (boxes[:, 3].astype(np.float64) >= .001)
    boxes = boxes[keep]
    truth[:len(boxes)] = boxes
    return truth


def load_detection_image(path, w, h, max_boxes, jitter, hue, saturation, exposure, rng, classes=None,
                         flip=True, warned=None):
    """One training image and its truths as pjreddie's load_data_detection makes them.

    The aspect ratio is jittered by up to `jitter` of each side, the image is scaled to fit w x h along its
    longer relative side and placed at a random offset on a 0.5-grey canvas (place_image, which truncates the
    size and offset to integers while the truths use the exact values, as darknet), HSV-distorted, then
    flipped with probability 1/2 when `flip`. Returns x (3, h, w) float32, y (max_boxes, 5) float32.
    """
    orig = load_training_image(path)
    _, oh, ow = orig.shape
    sized = make_image(w, h, 3, 0.5)
    jitter = _F32(jitter)
    dw = _F32(jitter * _F32(ow))
    dh = _F32(jitter * _F32(oh))
    new_ar = _F32(_F32(_F32(ow) + rand_uniform(rng, -dw, dw)) / _F32(_F32(oh) + rand_uniform(rng, -dh, dh)))
    scale = _F32(1)
    if new_ar < 1:
        nh = _F32(scale * _F32(h))
        nw = _F32(nh * new_ar)
    else:
        nw = _F32(scale * _F32(w))
        nh = _F32(nw / new_ar)
    dx = rand_uniform(rng, 0, _F32(_F32(w) - nw))
    dy = rand_uniform(rng, 0, _F32(_F32(h) - nh))
    K.place_image(orig, int(nw), int(nh), int(dx), int(dy), sized)
    random_distort_image(sized, hue, saturation, exposure, rng)
    flipped = bool(rng.integers(2)) if flip else False
    if flipped:
        K.flip_image(sized)
    labels = read_labels(label_path(path), classes, warned)
    truth = fill_truth_detection(labels, max_boxes, flipped, _F32(-dx / _F32(w)), _F32(-dy / _F32(h)),
                                 _F32(nw / _F32(w)), _F32(nh / _F32(h)), rng)
    return sized, truth


def load_data_detection(paths, n, w, h, max_boxes, jitter, hue, saturation, exposure, rng, classes=None,
                        flip=True, warned=None):
    """A detector batch (pjreddie's load_data_detection): `n` images drawn at random (with replacement) from
    `paths`. Returns x (n, 3, h, w) float32 and y (n, max_boxes, 5) float32."""
    if not paths:
        raise DarknetError("no training images: the image list is empty")
    x = np.empty((n, 3, h, w), np.float32)
    y = np.empty((n, max_boxes, 5), np.float32)
    picks = rng.integers(len(paths), size=n)
    for i, k in enumerate(picks):
        with naming(paths[k]):
            x[i], y[i] = load_detection_image(paths[k], w, h, max_boxes, jitter, hue, saturation, exposure, rng,
                                              classes, flip, warned)
    return x, y


# ---------------------------------------------------------------------------------------------------------
# Classification batches (pjreddie's load_data_augment)
# ---------------------------------------------------------------------------------------------------------

def random_augment_image(im, angle, aspect, low, high, w, h, rng):
    """darknet's random_augment_image: rotate by up to +-angle degrees, scale so the shorter side becomes a
    random size in [low, high], stretch by rand_scale(aspect), crop w x h at a random offset.

    As in darknet, the vertical offset range is computed with the crop width, and the shorter side is
    compared after truncation to an integer."""
    _, ih, iw = im.shape
    aspect = rand_scale(rng, aspect)
    r = int(rng.integers(min(low, high), max(low, high) + 1))
    shorter = ih if ih < _F32(iw * aspect) else int(_F32(iw * aspect))
    scale = _F32(_F32(r) / _F32(max(shorter, 1)))
    rad = _F32(float(rand_uniform(rng, -angle, angle)) * 2 * np.pi / 360.0)
    dx = _F32(float(_F32(_F32(_F32(iw * scale) / aspect) - _F32(w))) / 2.0)
    dy = _F32(float(_F32(_F32(ih * scale) - _F32(w))) / 2.0)
    dx = rand_uniform(rng, -dx, dx)
    dy = rand_uniform(rng, -dy, dy)
    return K.rotate_crop(im, rad, scale, w, h, dx, dy, aspect)


def class_truth(path, labels, warned=None):
    """One-hot float32 row for an image from its path (darknet's fill_truth matches `labels` by substring
    anywhere in the path, setting every match).

    Here the path's parts are searched from the file name outward, and the first part containing any label
    decides: the first label found there that is not part of a longer one found there, so a folder name such as
    "classification" does not make every image a "cat". No match, or several labels in the deciding part,
    gives a warning (darknet's "Too many or too few labels")."""
    truth = np.zeros(len(labels), np.float32)
    path = os.fspath(path)
    found = []
    for part in reversed(re.split(r"[/\\]", path)):
        found = [i for i, name in enumerate(labels) if name and name in part]
        if found:
            break
    # a label inside a longer one found in the same part ("cat" in "wildcat") does not count
    found = [i for i in found if not any(labels[i] != labels[j] and labels[i] in labels[j] for j in found)]
    if found:
        truth[found[0]] = 1
    if len(found) != 1 and not (len(labels) == 1 and not found):
        if warned is None or path not in warned:
            names = ", ".join(labels[i] for i in found[:5])
            what = f"{len(found)} class labels in one part of the path ({names})" if found else \
                "no class label in the path"
            warn(f"{path}: {what}")
            if warned is not None:
                warned.add(path)
    return truth


def load_classification_image(path, size, min_crop, max_crop, angle, aspect, hue, saturation, exposure, rng,
                              center=False, flip=True):
    """One classifier training image as darknet's load_image_augment_paths: a centre crop (`center`) or a
    random_augment_image crop of size x size, a random flip, random HSV distortion."""
    im = load_training_image(path)
    if center:
        crop = center_crop_image(im, size, size)
    else:
        crop = random_augment_image(im, angle, aspect, min_crop, max_crop, size, size, rng)
    if flip and rng.integers(2):
        K.flip_image(crop)
    random_distort_image(crop, hue, saturation, exposure, rng)
    return crop


def load_data_augment(paths, n, labels, size, min_crop, max_crop, angle, aspect, hue, saturation, exposure,
                      rng, center=False, flip=True, warned=None):
    """A classifier batch (pjreddie's load_data_augment): x (n, 3, size, size), y (n, len(labels)) one-hot."""
    if not paths:
        raise DarknetError("no training images: the image list is empty")
    x = np.empty((n, 3, size, size), np.float32)
    y = np.empty((n, len(labels)), np.float32)
    picks = rng.integers(len(paths), size=n)
    for i, k in enumerate(picks):
        with naming(paths[k]):
            x[i] = load_classification_image(paths[k], size, min_crop, max_crop, angle, aspect, hue, saturation,
                                             exposure, rng, center, flip)
            y[i] = class_truth(paths[k], labels, warned)
    return x, y


# ---------------------------------------------------------------------------------------------------------
# Datasets and the background loader
# ---------------------------------------------------------------------------------------------------------

class DetectionDataset:
    """Detector training data: the images of a list and darknet's augmentation settings. Picklable.

    `load_batch(n, rng, size=None)` returns (x, y) as load_data_detection; `size` = (w, h) overrides the
    network size (darknet's random=1 resizing)."""

    def __init__(self, paths, width, height, max_boxes=90, classes=None, jitter=0.2, hue=0.0, saturation=1.0,
                 exposure=1.0, flip=True):
        self.paths = list(paths)
        self.width, self.height = int(width), int(height)
        self.max_boxes = int(max_boxes)
        self.classes = classes
        self.jitter, self.hue = float(jitter), float(hue)
        self.saturation, self.exposure = nonzero(saturation), nonzero(exposure)
        self.flip = flip
        self.warned = set()

    def load_batch(self, n, rng, size=None):
        w, h = size if size else (self.width, self.height)
        return load_data_detection(self.paths, n, w, h, self.max_boxes, self.jitter, self.hue, self.saturation,
                                   self.exposure, rng, self.classes, self.flip, self.warned)


class ClassificationDataset:
    """Classifier training data (darknet's CLASSIFICATION_DATA): images, class names matched in their paths,
    crop and distortion settings. `load_batch(n, rng, size=None)` returns (x, y) as load_data_augment."""

    def __init__(self, paths, labels, size, min_crop=None, max_crop=None, angle=0.0, aspect=1.0, hue=0.0,
                 saturation=1.0, exposure=1.0, center=False, flip=True):
        self.paths = list(paths)
        self.labels = list(labels)
        self.size = int(size)
        self.min_crop = int(min_crop if min_crop is not None else size)
        self.max_crop = int(max_crop if max_crop is not None else size)
        self.angle = float(angle)
        self.aspect = nonzero(aspect)
        self.hue, self.saturation, self.exposure = float(hue), nonzero(saturation), nonzero(exposure)
        self.center, self.flip = center, flip
        self.warned = set()

    def load_batch(self, n, rng, size=None):
        s = size[0] if size else self.size
        return load_data_augment(self.paths, n, self.labels, s, self.min_crop, self.max_crop, self.angle,
                                 self.aspect, self.hue, self.saturation, self.exposure, rng, self.center,
                                 self.flip, self.warned)


def batch_rng(seed, index):
    """The generator batch `index` is drawn with: a function of (seed, index) only, so batches do not
    depend on which worker made them or in which order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])


def _make_batch(dataset, batch_size, seeds, task):
    """Batch `index`: one share of the images for each seed, drawn with its own generator, joined in order (one
    share per replica when several train: each replica's images depend on its seed only, not on how many train
    beside it or in which process)."""
    index, _, size = task
    share = batch_size // len(seeds)
    parts = [dataset.load_batch(share, batch_rng(seed, index), size) for seed in seeds]
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))


def _thread_worker(dataset, batch_size, seeds, tasks, results, stop):
    one_kernel_thread_here()   # its kernels on this thread alone: a team of its own would take the step's cores
    while not stop.is_set():
        task = tasks.get()
        if task is None:
            return
        try:
            batch = _make_batch(dataset, batch_size, seeds, task)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            results.put((task[0], task[1], None, e))
        else:
            results.put((task[0], task[1], batch, None))


def _process_worker(dataset, batch_size, seeds, tasks, results):  # pragma: no cover - runs in a child
    while True:
        task = tasks.get()
        if task is None:
            return
        try:
            batch = _make_batch(dataset, batch_size, seeds, task)
        except BaseException as e:  # noqa: BLE001
            text = "".join(traceback.format_exception_only(type(e), e)).strip()
            try:
                import pickle
                pickle.dumps(e)
                error = e
            except Exception:  # noqa: BLE001
                error = None
            results.put((task[0], task[1], None, (error, text)))
        else:
            results.put((task[0], task[1], batch, None))


class BatchLoader:
    """Prepares training batches in the background: ``next(loader)`` -> (x, y).

    `workers` threads (the decode and augmentation kernels release the GIL, so a batch is made while the
    training step runs, as darknet's load thread does), or processes with ``processes=True``, make batches
    ahead of use; at most `prefetch` batches are queued or in progress. ``workers=0`` makes each batch in
    ``next()`` itself, in series (the reference the threads are tested against). Batch i is drawn with
    ``batch_rng(seed, i)`` and batches are handed out in order, so the sequence is the same for a given seed
    whatever the number of workers. An error in a worker is raised by the next ``next()`` (the message names
    the image or label file); the loader is then closed. ``close()`` (or leaving a ``with`` block) stops the
    workers. ``set_size(w, h)`` makes every batch not yet handed out at the new size (darknet's random resize).
    `start`: the index of the first batch (a resumed training run goes on with the batches it would have had).
    `seed` may be a list: one seed per equal share of each batch (the replicas', see _make_batch).
    """

    def __init__(self, dataset, batch_size, seed=0, workers=1, prefetch=None, processes=False, size=None, start=0):
        if batch_size < 1:
            raise DarknetError(f"batch size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seeds = tuple(int(s) for s in seed) if isinstance(seed, (list, tuple)) else (int(seed),)
        if self.batch_size % len(self.seeds):
            raise DarknetError(f"a batch of {batch_size} images does not split into {len(self.seeds)} equal shares")
        self.workers = max(0, int(workers))
        self.serial = self.workers == 0
        self.prefetch = 0 if self.serial else max(self.workers, int(prefetch) if prefetch else self.workers + 1)
        self.processes = bool(processes)
        self.size = tuple(size) if size else None
        self._generation = 0
        self._next = int(start)       # the index next() hands out
        self._submitted = self._next  # indices below this have been submitted
        self._ready = {}
        self._closed = False
        self._threads = []
        self._procs = []
        if self.serial:
            self.processes = False
            self._tasks, self._results, self._stop = queue.Queue(), queue.Queue(), threading.Event()
        elif self.processes:
            import multiprocessing as mp
            ctx = mp.get_context("spawn")
            self._tasks = ctx.Queue()
            self._results = ctx.Queue()
            for _ in range(self.workers):
                p = ctx.Process(target=_process_worker, daemon=True,
                                args=(dataset, self.batch_size, self.seeds, self._tasks, self._results))
                p.start()
                self._procs.append(p)
        else:
            self._tasks = queue.Queue()
            self._results = queue.Queue()
            self._stop = threading.Event()
            for i in range(self.workers):
                t = threading.Thread(target=_thread_worker, name=f"pydarknet-loader-{i}", daemon=True,
                                     args=(dataset, self.batch_size, self.seeds, self._tasks, self._results,
                                           self._stop))
                t.start()
                self._threads.append(t)
        while self._submitted < self._next + self.prefetch:
            self._submit(self._submitted)
            self._submitted += 1

    def _submit(self, index):
        if not self.serial:
            self._tasks.put((index, self._generation, self.size))

    def set_size(self, width, height):
        """Batches not yet handed out are (re)made at width x height."""
        size = (int(width), int(height))
        if size == self.size:
            return
        self.size = size
        self._generation += 1
        self._ready.clear()
        self._drain(self._tasks)
        for index in range(self._next, self._submitted):
            self._submit(index)

    def _alive(self):
        workers = self._procs if self.processes else self._threads
        return any(w.is_alive() for w in workers)

    def _raise(self, error):
        self.close()
        if self.processes:
            exc, text = error
            if isinstance(exc, BaseException):
                raise exc
            raise DarknetError(f"data loader: {text}")
        raise error

    def __next__(self):
        if self._closed:
            raise DarknetError("the batch loader is closed")
        if self.serial:
            batch = _make_batch(self.dataset, self.batch_size, self.seeds, (self._next, self._generation, self.size))
            self._next += 1
            return batch
        while self._next not in self._ready:
            try:
                index, generation, batch, error = self._results.get(timeout=0.5)
            except queue.Empty:
                if not self._alive():
                    self.close()
                    raise DarknetError("data loader: every worker stopped unexpectedly") from None
                continue
            if generation != self._generation or index < self._next:
                continue  # made before a set_size(): its replacement is on the way
            if error is not None:
                self._raise(error)
            self._ready[index] = batch
        batch = self._ready.pop(self._next)
        self._next += 1
        self._submit(self._submitted)
        self._submitted += 1
        return batch

    next_batch = __next__

    def __iter__(self):
        return self

    def close(self):
        """Stop the workers (a batch in progress is finished and dropped)."""
        if self._closed:
            return
        self._closed = True
        if self.serial:
            return
        self._drain(self._tasks)
        if self.processes:
            for _ in self._procs:
                self._tasks.put(None)
            for p in self._procs:
                # a child blocked writing a finished batch needs the result queue read to exit
                for _ in range(100):
                    p.join(timeout=0.05)
                    if not p.is_alive():
                        break
                    self._drain(self._results)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=1)
            self._tasks.close()
            self._results.close()
        else:
            self._stop.set()
            for _ in self._threads:
                self._tasks.put(None)
            for t in self._threads:
                t.join(timeout=30)
        self._ready.clear()

    @staticmethod
    def _drain(q):
        while True:
            try:
                q.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
