"""The first run: Numba compiles pydarknet's kernels the first time they run on a CPU (for each pydarknet and
Numba version), which takes minutes, then loads them from its cache in milliseconds.

`announce_compiling()` says so on stderr when a command compiles for seconds; `compile_kernels()` (`pydarknet
compile`) does it ahead of time by running small networks of every layer type through detection, classification
and a training step, so that every kernel is compiled with the argument types the commands give it. The cache is where
Numba puts it: beside the kernels' source, else (a read-only install) Numba's user-wide cache, or
NUMBA_CACHE_DIR when set.
"""
import atexit
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..files.config import chatter, note
from ..files.resources import find_file
from ..kernels import cache_folder

NOTICE = ("Compiling pydarknet's kernels for this CPU ({cpu}): Numba turns them into machine code the first "
          "time they run, once per CPU and pydarknet or Numba version, and caches them in {cache}.{measured} "
          "Later runs start in seconds; `pydarknet compile` does it ahead of time.")
MEASURED = " `{command}` compiled for {seconds:.0f} s the last time it did on this machine."
# Seconds of compiling before the notice shows: a kernel or two (a new argument type) compile in less.
NOTICE_AFTER = 2.0
# What a command's compiling took on this machine, by command, beside the cached kernels: the notice's figure.
TIMES_FILE = "compile-seconds.json"

# Networks that between them have every layer type pydarknet knows, each with both darknets' arithmetic.
FORWARD_CFGS = ["shapes-tiny", "yolov3-tiny", "yolov3-tiny-prn", "yolov2-tiny", "yolov1-tiny", "tiny", "darknet53",
                "yolov4-tiny", "yolo-fastest-1.1", "enet-coco", "yolov4-sam-mish-csp-reorg-bfm", "yolov4-csp",
                "yolov7-tiny"]
TRAIN_CFGS = ["shapes-tiny", "yolov2-tiny", "tiny", "yolov4-tiny", "yolo-fastest-1.1", "enet-coco",
              "yolov4-sam-mish-csp-reorg-bfm"]
# The demo networks that the quick start trains: the training step a wheel carries compiled.
DEMO_CFGS = ["shapes-tiny", "shapes-v4tiny"]
# The layers and options no shipped cfg has.
OTHER_LAYERS = """[net]
batch=2
width=20
height=20
channels=3
[crop]
crop_width=16
crop_height=16
[convolutional]
filters=8
size=3
pad=1
activation=normalize_channels
[batchnorm]
[activation]
activation=logistic
[normalization]
size=5
alpha=0.5
beta=0.75
kappa=2
[maxpool]
maxpool_depth=1
out_channels=4
[local_avgpool]
size=2
stride=2
[local]
filters=4
size=3
stride=2
pad=1
activation=leaky
[l2norm]
[connected]
output=10
activation=relu
[logistic]
[cost]
type=sse
"""
SMALL = 64   # pixels: the size the resizable networks run at (kernels compile for types, not sizes)


def compile_times():
    """{command: seconds} its last compiling run took on this machine (empty when never measured)."""
    try:
        return json.loads((cache_folder() / TIMES_FILE).read_text())
    except (OSError, ValueError):
        return {}


def record_compile_time(command, seconds):
    from ..files.errors import WriteError
    from ..files.weights import atomic_write
    try:
        atomic_write(cache_folder() / TIMES_FILE, json.dumps({**compile_times(), command: round(seconds, 1)}).encode())
    except WriteError:
        pass   # a read-only cache: the next notice has no figure


class CompileWatch:
    """Numba's compile events for pydarknet's kernels in this process: the time spent compiling (nested compiles
    counted once), NOTICE on stderr once it passes NOTICE_AFTER seconds (once, unless -q), and, at exit, that
    time recorded for `command` when it passed it."""

    def __init__(self, command, clock=time.perf_counter):
        self.command, self.clock = command, clock
        self.depth, self.started, self.total, self.said = 0, 0.0, 0.0, False

    def seconds(self):
        return self.total + (self.clock() - self.started if self.depth else 0.0)

    def start(self):
        if self.depth == 0:
            self.started = self.clock()
        self.depth += 1
        self.tell()

    def end(self):
        self.depth -= 1
        if self.depth == 0:
            self.total += self.clock() - self.started
        self.tell()

    def tell(self):
        if self.said or self.seconds() < NOTICE_AFTER:
            return
        self.said = True
        if not chatter["quiet"]:
            import llvmlite.binding as llvm
            seconds = compile_times().get(self.command)
            measured = MEASURED.format(command=self.command, seconds=seconds) if seconds else ""
            note(NOTICE.format(cpu=llvm.get_host_cpu_name(), cache=cache_folder(), measured=measured))

    def record(self):
        if self.said:
            record_compile_time(self.command, self.seconds())


_watches = []   # this process's CompileWatch (announce_compiling)


def compiled_here():
    """Whether this process compiled any of pydarknet's kernels; None where nothing watched (announce_compiling)."""
    return any(watch.seconds() > 0 for watch in _watches) if _watches else None


def announce_compiling(command):
    """From now on in this process, watch Numba compile pydarknet's kernels (CompileWatch) for `command`."""
    from numba.core import event
    watch = CompileWatch(command)
    _watches.append(watch)

    class Listener(event.Listener):
        def on_start(self, ev):
            if ev.data["dispatcher"].__module__.startswith("pydarknet"):
                watch.start()

        def on_end(self, ev):
            if ev.data["dispatcher"].__module__.startswith("pydarknet"):
                watch.end()

    event.register("numba:compile", Listener())
    atexit.register(watch.record)
    return watch


# -- the work of `pydarknet compile` ------------------------------------------------------------------------
def shipped_cfg(name):
    return find_file(f"cfg/{name}.cfg", what="cfg file")


def small_network(cfg, darknet=None, batch=None):
    """The cfg's network at SMALL x SMALL when it can be resized (the fixed-size ones as they are), with
    `batch` images per training chunk when given."""
    from ..network.network import Network
    from .predict import FIXED_SIZE_LAYERS
    net = Network(cfg, quiet_unused=True, darknet=darknet)
    if batch is not None:
        net.batch, net.subdivisions = batch, 1
    if not any(layer.type in FIXED_SIZE_LAYERS for layer in net.layers):
        net.resize(SMALL, SMALL)
    net.quiet = True
    return net


def predict_with(cfg, darknet, image):
    """What `detect` or `classify` does with the network: the pre-processing, the forward pass, the boxes
    (every one: threshold 0) and their NMS, or the top classes."""
    from ..results.detections import do_nms_obj, network_detections
    from .predict import Classifier, Detector
    from .train.run import is_detector
    net = small_network(cfg, darknet)
    if is_detector(net):
        for letterbox in (True, False):
            Detector(cfg, None, letterbox=letterbox, network=net).detect(image, thresh=0.0)
        do_nms_obj(network_detections(net, net.w, net.h, 0.0), 0.4, classes=1)   # `detector recall`'s
    else:
        for preprocess in ("resize_min", "letterbox", "resize"):
            Classifier(cfg, None, preprocess=preprocess, network=net).classify(image)


def train_step(cfg, folder):
    """One training iteration on a batch of two augmented images, as `train` makes them."""
    from .train.data import ClassificationDataset
    from .train.run import detection_dataset, is_detector
    from .train.step import train_network
    net = small_network(cfg, batch=2).initialize(0)
    rng = np.random.default_rng(0)
    image = str(folder / "dog.jpg")
    if is_detector(net):   # every augmentation on, whatever the cfg asks, so that all its kernels compile
        net.hue, net.saturation, net.exposure = 0.1, 1.5, 1.5
        if net.darknet == "ab":   # the fork's pipeline
            net.blur, net.gaussian_noise, net.mosaic, net.letter_box = 1, 50, 1, 0
        data = detection_dataset(net, [image])
    else:
        labels = labels_with_dog(int(np.prod(net.output_layer.out_shape)))
        data = ClassificationDataset([image], labels, net.w, angle=7, aspect=1.15, hue=0.1, saturation=1.5,
                                     exposure=1.5)
    train_network(net, *data.load_batch(net.batch, rng))


def labels_with_dog(count):
    """A classifier's `count` labels, the first matching the sample image's path."""
    return ["dog"] + [f"class {i}" for i in range(1, count)]


def decode_images(folder):
    """The sample image through both decoders, as baseline and progressive JPEG and as PNG; drawn on."""
    import cv2

    from ..files.image import draw_detections, load_image, to_bgr8
    dog = folder / "dog.jpg"
    pixels = cv2.imread(str(dog))
    cv2.imwrite(str(folder / "dog-progressive.jpg"), pixels, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    cv2.imwrite(str(folder / "dog.png"), pixels)
    for name in ("dog.jpg", "dog-progressive.jpg", "dog.png"):
        for decoder in ("darknet", "opencv"):
            im = load_image(folder / name, decoder)
    draw_detections(to_bgr8(im), [(0.5, 0.5, 0.2, 0.3)], [[0]], ["dog"], 1, width=2)


def evaluate(folder):
    """`detector map`, `valid` and `recall` on the sample image with shapes-tiny, `classifier valid` with tiny."""
    from .evaluate import run_classifier_valid, run_map, run_recall, run_valid
    (folder / "valid.txt").write_text(f"{folder / 'dog.jpg'}\n")
    (folder / "shapes.names").write_text("circle\nsquare\ntriangle\n")
    (folder / "shapes.data").write_text(f"classes=3\nvalid={folder / 'valid.txt'}\n"
                                        f"names={folder / 'shapes.names'}\n")
    detector = shipped_cfg("shapes-tiny")
    for letter_box in (False, True):
        run_map(folder / "shapes.data", detector, None, letter_box=letter_box, network=small_network(detector))
    run_valid(folder / "shapes.data", detector, None, out_dir=folder / "results", network=small_network(detector))
    run_recall(folder / "shapes.data", detector, None, network=small_network(detector))
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in labels_with_dog(1000)))
    (folder / "tiny.data").write_text(f"classes=1000\nvalid={folder / 'valid.txt'}\n"
                                      f"labels={folder / 'labels.txt'}\ntop=5\n")
    classifier = shipped_cfg("tiny")
    run_classifier_valid(folder / "tiny.data", classifier, None, network=small_network(classifier))


def track_two_frames():
    """`demo -track`: a box continued from one frame to the next (the tracker's matching kernel)."""
    from ..results.track import Tracker
    from ..results.predictions import Detection, DetectionResult
    tracker = Tracker()
    for x in (0.5, 0.51):
        frame = DetectionResult("frame", 100, 100, 0.0, boxes=[((x, 0.5, 0.2, 0.2), [(0, 0.9)])])
        frame.detections = [Detection(0, "dog", 0.9, 0.9, (x, 0.5, 0.2, 0.2), (0, 0, 0, 0))]
        tracker.update(frame)


def tiles_and_heatmaps():
    """-tiles' join of the boxes cut by tile edges and -heatmaps' painting (their kernels)."""
    from ..kernels.heatmap import paint_boxes
    from ..kernels.tiles import join_cut_boxes
    boxes = np.float32([[0, 0, 10, 10], [8, 0, 20, 10]])
    join_cut_boxes(boxes, np.full((2, 4), np.nan, np.float32), np.ones((2, 2), np.float32), np.int32([0, 1]),
                   np.int32([0, 0]))
    paint_boxes(np.zeros((10, 20), np.float32), boxes.astype(np.int32), np.ones(2, np.float32))


def fast_and_reduced_products(reduced=True):
    """--fast's Winograd kernels, and (`reduced`) --int16's and --bf16's (where the CPU has VNNI, the AMX tiles),
    which only layers of a network at its full size take: yolov3-tiny and yolov4-tiny at 416 (F(4x4) in bands and in
    three passes, F(2x2), the tiles in place), darknet53 at 256 (strided layers of 64 channels and more: the packed
    tiles)."""
    from ..kernels import products
    from ..network.network import Network
    backends = [name for name in products.REDUCED if reduced and products.reduced_unavailable(name) is None]
    for backend in ["fast"] + backends:
        previous = products.set_backend(backend)
        try:
            for name in ("yolov3-tiny", "yolov4-tiny", "darknet53"):
                net = Network(shipped_cfg(name), quiet_unused=True)
                net.forward(np.zeros((1,) + net.input_shape, np.float32))
        finally:
            products.set_backend(previous)


def compile_jobs(folder, training=True, portable=False):
    """Functions that between them compile every kernel the commands use; `portable`, those a wheel carries
    (compile_for_wheel): not the reduced-precision products, whose kernels take the CPU's own instructions (they
    compile on the first use of --int16 or --bf16), and the training step of the demo networks only."""
    from ..kernels.placement import thread_ids
    image = str(folder / "dog.jpg")
    other = folder / "other-layers.cfg"
    jobs = [lambda: decode_images(folder)]
    jobs += [lambda n=name, d=darknet: predict_with(shipped_cfg(n), d, image)
             for name in FORWARD_CFGS for darknet in ("pjreddie", "ab")]
    jobs += [lambda: evaluate(folder), lambda: small_network(other).forward(np.zeros((1, 3, 20, 20), np.float32)),
             track_two_frames, tiles_and_heatmaps, lambda: fast_and_reduced_products(reduced=not portable),
             thread_ids]   # the placement's kernel, which a pass runs only where its threads fill the cores
    if training:
        from .train.step import train_network
        jobs += [lambda n=name: train_step(shipped_cfg(n), folder) for name in (DEMO_CFGS if portable else TRAIN_CFGS)]
    if training and not portable:
        jobs.append(lambda: train_network(small_network(other).initialize(0), np.ones((2, 3, 20, 20), np.float32),
                                          np.ones((2, 10), np.float32)))
    return jobs


def compile_kernels(training=True, progress=None, portable=False):
    """Run every compile job (training ones too when `training`; compile_jobs' `portable` set), reporting
    progress(done, total)."""
    with tempfile.TemporaryDirectory(prefix="pydarknet-compile-") as tmp:
        folder = Path(tmp)
        shutil.copy(find_file("data/dog.jpg", what="image"), folder / "dog.jpg")
        (folder / "dog.txt").write_text("0 0.5 0.5 0.4 0.6\n1 0.3 0.3 0.2 0.2\n")
        (folder / "other-layers.cfg").write_text(OTHER_LAYERS)
        jobs = compile_jobs(folder, training, portable)
        if progress is not None:
            progress(0, len(jobs))
        for done, job in enumerate(jobs, 1):
            job()
            if progress is not None:
                progress(done, len(jobs))


def compile_for_wheel(level, out):
    """Compile the kernels a wheel carries (compile_jobs' `portable` set) and keep them in out/<level>/
    (kernels.shipped.keep), in a process started with kernels.shipped.target_environment(level) and a
    NUMBA_CACHE_DIR of its own (tools/backend/pydarknet_wheel.py)."""
    from ..kernels import shipped
    compile_kernels(portable=True)
    return shipped.keep(level, os.environ["NUMBA_CACHE_DIR"], out)
