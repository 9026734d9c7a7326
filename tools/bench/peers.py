"""`make bench`: pydarknet against OpenCV's DNN module (which reads darknet files) on the same inputs, in one run;
pydarknet's modes against OpenCV and the exported ONNX graphs in ONNX Runtime and OpenVINO (the `peers` lines,
with each row's GFLOP/s and numpy's float32 matrix product on the same threads as the practical limit), each
forward timed after a pause and back to back (a stream's pace); it ends with a summary of the peers lines: per
network and timing, pydarknet's fastest mode on this CPU and its ratio to each peer; then which speed targets hold
in each timing (the fastest mode at most 1.3x OpenVINO's faster precision on AVX-512 CPUs, --fast at most 1.0x the
faster float32 peer, the whole `detect` process at most 1.3x the OpenCV script's), and for each forward target
missed, the per-layer table of that network and mode (tools/bench/layers.py: where the time goes).
`--layers NETWORK MODE` prints that table alone.
`make bench-train` (--train): seconds per training iteration as `pydarknet train` prints them, of three networks.

Times are medians of repeated runs after warm-up; the ratio is pydarknet / OpenCV (lower is better); a stream's
figures are images per second over the run's median. The official weights come from ../shared/models where that
reference data is beside the checkout, else from `pydarknet download`'s cache, fetched into it on first use.
"""
import argparse
import io
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

import pydarknet
from pydarknet.files import download
from pydarknet.files.errors import DarknetError, install_hint
from pydarknet.files.image import letterbox_image, load_image, resize_image, resize_min
from pydarknet.files.resources import CHECKOUT, shipped_root
from pydarknet.kernels import products
from pydarknet.network.network import Network
from pydarknet.tasks import engines
from pydarknet.tasks.about import cpu_line, cpu_model, vector_width

from .layers import peer_layers, table_lines, time_layers

SHARED = CHECKOUT.parent / "shared"   # the reference data, beside a checkout


def median_time(fn, runs, warmup=2):
    return median_times([fn], runs, warmup)[0]


QUIET = 0.02   # seconds between runs: longer than the spin of any idle pool (pydarknet's OpenMP threads: 5 ms)


def median_times(fns, runs, warmup=2, quiet=QUIET):
    """Median seconds of each function (None for a missing one), their runs taken in turn so that a busy spell
    of the machine weighs on all of them alike, each round in a new order (a seeded shuffle): which runner ran just
    before moves a forward as much as the pause does (its weights evict the next one's from the caches; docs/notes.md,
    the eighth session), and in a fixed order each function would always follow the same one. Each run starts
    `quiet` seconds after the one before, when the threads it left spinning have left the cores to the next (whose
    own threads have then gone to sleep)."""
    return paused_and_streamed(fns, runs, 0, warmup, quiet)[0]


STREAK = 3   # forwards back to back after each paused one (bench_peers)
PAUSED, STREAMED = "after a pause", "back to back"   # the two timings of the summary and the targets


def paused_and_streamed(fns, runs, streak, warmup=2, quiet=QUIET):
    """median_times's medians, and with `streak`, each function's medians of the `streak` runs it makes back to
    back right after each of its paused ones (None without): a stream's pace, its own threads still spinning and
    its data in the caches. The two differ by runtime: after 20 ms idle, Tiny Darknet's --fast forward took 6.5
    against 6.0 ms back to back, OpenVINO's 7.6 against 5.2, ONNX Runtime's 10.8 against 6.3 (this Xeon)."""
    present = [fn for fn in fns if fn is not None]
    for _ in range(warmup):
        for fn in present:
            fn()
    paused, streamed = {fn: [] for fn in present}, {fn: [] for fn in present}
    rounds = random.Random(0)
    for _ in range(runs):
        for fn in rounds.sample(present, len(present)):
            time.sleep(quiet)
            for times in [paused[fn]] + [streamed[fn]] * streak:
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
    return ([statistics.median(paused[fn]) if fn is not None else None for fn in fns],
            [statistics.median(streamed[fn]) if fn is not None and streak else None for fn in fns])


def opencv_net(cfg, weights, winograd=True):
    """OpenCV DNN's forward of a darknet network, or None without the dnn module; winograd=False (where OpenCV
    has the switch, 4.7 on) turns off its Winograd F(6x6, 3x3), leaving every multiplication of the
    convolutions to be done, as the exact products do."""
    import cv2
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
        return None
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    if not winograd:
        if not hasattr(net, "enableWinograd"):
            return None
        net.enableWinograd(False)
    names = net.getUnconnectedOutLayersNames()

    def run(x):
        net.setInput(x)
        return net.forward(names)
    return run


def mode_forward(cfg, weights, x, name):
    """The forward on x of a network of its own that runs the products `name` (its Network.products), as a user's
    Detector in one mode runs it: one network taking every mode in turn would make its layers' plans again at every
    turn (Convolutional.plan)."""
    net = Network(cfg, quiet_unused=True)
    net.load(weights)
    net.resize(x.shape[3], x.shape[2])   # as `prepare` sized the first network (a classifier's resize_min)
    net.products = products.products_for(name)
    return lambda: net.forward(x)


def bench_forward(name, cfg, weights, image, prepare, runs):
    """The forward pass with the exact and the fast products, against OpenCV DNN, all in turn. OpenCV's own
    figure uses its Winograd transform for 3x3 layers (a fifth of the multiplications, not darknet's sums):
    the exact line also names OpenCV with it off, the like-for-like peer of products that keep darknet's order."""
    net = Network(cfg, quiet_unused=True)
    net.load(weights)
    x = prepare(load_image(image), net)[None]
    peer, direct = opencv_net(cfg, weights), opencv_net(cfg, weights, winograd=False)
    exact, fast, theirs, theirs_direct = median_times(
        [mode_forward(cfg, weights, x, "darknet"), mode_forward(cfg, weights, x, "fast"),
         (lambda: peer(x)) if peer else None, (lambda: direct(x)) if direct else None], runs)
    report(f"forward {name} {x.shape[3]}x{x.shape[2]}", exact, theirs, theirs_direct)
    report(f"forward {name} --fast", fast, theirs)


def report(what, ours, theirs, theirs_direct=None):
    line = f"{what:<38} pydarknet {ours * 1000:8.1f} ms"
    if theirs is not None:
        line += f"   opencv {theirs * 1000:8.1f} ms   ratio {ours / theirs:5.2f}x"
    else:
        line += "   opencv: unavailable (needs opencv-python-headless<5 with the dnn module)"
    if theirs_direct is not None:
        line += f"   (opencv without Winograd {theirs_direct * 1000:.1f} ms: {ours / theirs_direct:.2f}x)"
    print(line, flush=True)


def session_runners(net, x, threads):
    """{name: run} for the peers that run `pydarknet export onnx`'s graph of `net`, where installed (the bench
    extra): ONNX Runtime (float32, its only CPU precision) and OpenVINO in float32 and in its default precision
    on this CPU (bf16 where the CPU has AMX or avx512_bf16), each on `threads` threads, as the engines run them
    (tasks/engines.py); and why a peer is missing, as {name: reason}."""
    runners, missing = {}, {}
    path = engines.graph_file(net)
    if engines.installed("onnxruntime"):
        session = engines.onnxruntime_runner(str(path), threads)
        runners["onnxruntime f32"] = lambda: session(x)
    else:
        missing["onnxruntime"] = install_hint("bench")
    if engines.installed("openvino"):
        default = engines.openvino_default_precision()
        for label, precision in (("f32", "f32"), (f"default ({default})", None)):
            runners[f"openvino {label}"] = lambda run=engines.openvino_runner(path, threads, precision): run(x)
    else:
        missing["openvino"] = install_hint("bench")
    return runners, missing


def matmul_limit(runs):
    """numpy's float32 matrix product (its BLAS, on every core as the kernels' threads) on 2048 x 2048 matrices:
    GFLOP/s, the machine's practical limit for float32 products."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    return 2 * 2048 ** 3 / median_time(lambda: a @ a, runs) / 1e9


def bench_peers(name, cfg, weights, image, prepare, runs):
    """pydarknet's modes (the exact products, --fast, --int16, --bf16) against OpenCV DNN on the darknet files and
    the exported graph in ONNX Runtime and OpenVINO, all in turn on the same input and threads: milliseconds,
    GFLOP/s of the network's multiply-adds, and the ratios the speed targets are about (--fast to the faster
    float32 peer on the export, --int16 and --bf16 to OpenVINO's faster precision), each after a pause and back to
    back (paused_and_streamed: two blocks of lines). Returns the medians of each, {label: seconds}, pydarknet's as
    "pydarknet <mode>": the summary's figures, all from one block of turns; and what did not run, {name: why} (its
    runtime's name for a peer's rows: "onnxruntime", "openvino")."""
    import numba

    net = Network(cfg, quiet_unused=True)
    net.load(weights)
    x = prepare(load_image(image), net)[None]
    flops = sum(layer.flops() for layer in net.layers)
    threads = numba.get_num_threads()
    runners, missing = session_runners(net, x, threads)
    opencv = opencv_net(cfg, weights)
    if opencv is not None:
        runners = {"opencv dnn": lambda: opencv(x), **runners}
    else:
        missing["opencv dnn"] = "needs opencv-python-headless<5 with the dnn module"
    ours = {"pydarknet exact": mode_forward(cfg, weights, x, "darknet"),
            "pydarknet --fast": mode_forward(cfg, weights, x, "fast")}
    for precision in products.REDUCED:
        why = products.reduced_unavailable(precision)
        if why is None:
            ours[f"pydarknet --{precision}"] = mode_forward(cfg, weights, x, precision)
        else:
            missing[f"pydarknet --{precision}"] = why
    for engine in ("onnxruntime", "openvino"):   # the runtimes behind pydarknet's forward (tasks/engines.py)
        if engines.installed(engine):
            on_engine = Network(cfg, quiet_unused=True)
            on_engine.load(weights)
            on_engine.resize(x.shape[3], x.shape[2])   # as `prepare` sized the network (a classifier's resize_min)
            engines.use_engine(on_engine, engine)
            ours[f"pydarknet --engine {engine}"] = lambda on_engine=on_engine: on_engine.forward(x)
    paused, streamed = paused_and_streamed([*ours.values(), *runners.values()], runs, STREAK)
    times, back_to_back = dict(zip([*ours, *runners], paused)), dict(zip([*ours, *runners], streamed))
    head = f"peers {name} {x.shape[3]}x{x.shape[2]}, {flops / 1e9:.2f} GFLOP, {threads} threads"
    peer_lines(head, times, flops)
    peer_lines(f"{head}, back to back ({STREAK} forwards after each of the runs above)", back_to_back, flops)
    for label, reason in missing.items():
        print(f"  {label:<31} unavailable: {reason}", flush=True)
    return times, back_to_back, missing


def peer_lines(head, times, flops):
    """bench_peers's block of one way of timing: `head`, then a row per runner, its ms, GFLOP/s and the ratios the
    targets are about."""
    print(head, flush=True)
    f32_peers = [t for label, t in times.items() if label.endswith("f32")]
    default_label = next((label for label in times if "default" in label), None)
    openvino = faster_openvino(times)
    # what `--engine openvino` runs with no mode: OpenVINO's default, or float32 where its bf16 does not pay
    openvino_alone = "openvino f32" if openvino_plain_precision() == "f32" else default_label
    for label, seconds in times.items():
        line = f"  {label:<31} {seconds * 1000:8.1f} ms {flops / seconds / 1e9:7.0f} GFLOP/s"
        if label == "pydarknet --fast" and f32_peers:
            line += f"   {seconds / min(f32_peers):.2f}x the faster float32 peer"
        if label.removeprefix("pydarknet --") in products.REDUCED and openvino:
            line += f"   {seconds / times[openvino]:.2f}x openvino's faster precision"
        alone = {"pydarknet --engine onnxruntime": "onnxruntime f32", "pydarknet --engine openvino": openvino_alone}
        if alone.get(label) in times:
            line += f"   {seconds / times[alone[label]]:.2f}x {alone[label]} alone"
        print(line, flush=True)


def faster_openvino(times):
    """The label of OpenVINO's faster row among a network's peers medians ({label: seconds}): its default precision
    or float32; None where OpenVINO did not run."""
    return min((label for label in times if label.startswith("openvino ")), key=times.get, default=None)


def openvino_plain_precision():
    """The precision `--engine openvino` asks OpenVINO for with no mode on this CPU (engines.openvino_precision;
    None: its default), None where OpenVINO is not installed."""
    return engines.openvino_precision(None) if engines.installed("openvino") else None


def bench_decode(path, runs):
    import cv2
    # in turn without a pause: OpenCV decodes in the calling thread, which pydarknet's spinning threads leave alone
    ours, theirs = median_times([lambda: load_image(path), lambda: cv2.imread(str(path), cv2.IMREAD_COLOR)], runs,
                                quiet=0)
    h, w = cv2.imread(str(path)).shape[:2]
    report(f"decode {path.name} {w}x{h}", ours, theirs)


def big_jpeg(dog, folder):
    """A 1352x900 JPEG made from dog.jpg (the size of a typical photo resized for the web)."""
    import cv2
    path = Path(folder) / "dog_1352x900.jpg"
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(dog)), (1352, 900)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


OPENCV_DETECT = """
import sys, cv2, numpy as np
cfg, weights, image = sys.argv[1:4]
net = cv2.dnn.readNetFromDarknet(cfg, weights)
im = cv2.imread(image)
h, w = im.shape[:2]
net.setInput(cv2.dnn.blobFromImage(im, 1 / 255.0, (416, 416), swapRB=True, crop=False))
boxes, scores, ids = [], [], []
for out in net.forward(net.getUnconnectedOutLayersNames()):
    for row in out:
        cls = int(np.argmax(row[5:])); score = float(row[5 + cls])
        if score > 0.5:
            cx, cy, bw, bh = row[:4] * [w, h, w, h]
            boxes.append([int(cx - bw / 2), int(cy - bh / 2), int(bw), int(bh)]); scores.append(score); ids.append(cls)
for i in np.array(cv2.dnn.NMSBoxes(boxes, scores, 0.5, 0.45)).reshape(-1):
    x, y, bw, bh = boxes[i]
    cv2.rectangle(im, (x, y), (x + bw, y + bh), (0, 0, 255), 2)
    print(ids[i], round(scores[i] * 100))
cv2.imwrite("predictions.jpg", im)
"""


def bench_detect_command(cfg, weights, image, runs, folder):
    """Whole-process wall time of `pydarknet detect` (warm Numba cache) and of the same job in OpenCV DNN, medians
    of `runs` runs of each taking turns, printed and returned (ours, theirs); and of darknet C's `detector test`
    when DARKNET_BIN names a build (run in its own folder, for its data/labels)."""
    import subprocess
    ours_cmd = [sys.executable, "-m", "pydarknet", "detect", str(cfg), str(weights), str(image), "-q"]
    theirs_cmd = [sys.executable, "-c", OPENCV_DETECT, str(cfg), str(weights), str(image)]
    # the child must import this very pydarknet, whether installed or run from a checkout
    root = str(Path(pydarknet.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    # with its bytecode cached, as pip leaves an installed package (the warm-up run writes it in a checkout)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    run = lambda cmd, cwd=folder: subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env=env)  # noqa: E731
    darknet = os.environ.get("DARKNET_BIN")
    darknet_cmd = [darknet, "detector", "test", str(Path(cfg).parent / "coco.data"), str(cfg), str(weights),
                   str(image), "-dont_show"] if darknet else None
    ours, theirs, c = median_times([lambda: run(ours_cmd), lambda: run(theirs_cmd),
                                    (lambda: run(darknet_cmd, Path(darknet).resolve().parent)) if darknet else None],
                                   runs, warmup=1)
    report("command: detect yolov3-tiny dog.jpg", ours, theirs)
    if c is not None:
        print(f"{'command: darknet C detector test':<38} darknet   {c * 1000:8.1f} ms   pydarknet / darknet "
              f"{ours / c:5.2f}x", flush=True)
    return ours, theirs


STREAM_IMAGES = 64


def bench_stream(name, cfg, weights, images, runs):
    """Images per second through a detector over a 64-image stream (the sample images repeated), at batch 1 and 8:
    pydarknet's Detector as `detect -batch N --json` runs it (decoding, letterbox or resize, forward, boxes, NMS;
    the next batch prepared in a background thread); OpenCV DNN's loop over the same files (imread,
    blobFromImages at the network size, forward)."""
    from itertools import cycle, islice

    from pydarknet.tasks.predict import Detector
    from pydarknet.tasks.stream import batched, prefetch
    paths = [str(p) for p in islice(cycle(images), STREAM_IMAGES)]
    detector = Detector(cfg, weights)

    def ours(batch):
        def run():
            for group in batched(prefetch((detector.prepare(p) for p in paths), batch), batch):
                detector.detect_batch(group)
        return run

    peer = opencv_net(cfg, weights)

    def theirs(batch):
        import cv2

        def run():
            for group in batched(paths, batch):
                peer(cv2.dnn.blobFromImages([cv2.imread(p) for p in group], 1 / 255, (detector.net.w, detector.net.h),
                                            swapRB=True, crop=False))
        return run if peer else None

    batches = (1, 8)
    times = median_times([f(batch) for batch in batches for f in (ours, theirs)], runs, warmup=1)
    for batch, (mine, peers) in zip(batches, zip(times[::2], times[1::2])):
        line = f"stream {name} {STREAM_IMAGES} images, batch {batch}"
        line = f"{line:<38} pydarknet {STREAM_IMAGES / mine:6.1f} images/s"
        if peers is not None:
            line += f"   opencv {STREAM_IMAGES / peers:6.1f} images/s   ratio {mine / peers:5.2f}x"
        print(line, flush=True)


def bench_dask(name, cfg, weights, images, runs):
    """Images per second over the same 64-image stream through one process (as bench_stream's batch 1) and
    through `--dask local:1` and `local:2` (pydarknet.tasks.distributed.detect on a started cluster: each run sends the
    weights to the workers, which build the network, then the chunks of images; the cluster's start is shown
    apart)."""
    from itertools import cycle, islice

    from pydarknet.tasks.predict import Detector
    from pydarknet.tasks.stream import batched, prefetch
    from pydarknet.tasks import distributed
    from pydarknet.files.errors import DarknetError
    try:
        distributed.require_dask()
    except DarknetError as e:   # the optional extra
        print(f"dask: unavailable ({e})", flush=True)
        return
    paths = [str(p) for p in islice(cycle(images), STREAM_IMAGES)]
    detector = Detector(cfg, weights)

    def alone():
        for group in batched(prefetch((detector.prepare(p) for p in paths), 1), 1):
            detector.detect_batch(group)

    label = f"dask {name} {STREAM_IMAGES} images"
    print(f"{label + ', 1 process':<38} {STREAM_IMAGES / median_time(alone, runs, warmup=1):6.1f} images/s", flush=True)
    for workers in (1, 2):
        started = time.perf_counter()
        with distributed.connect(f"local:{workers}") as client:
            start = time.perf_counter() - started
            seconds = median_time(lambda: all(distributed.detect(paths, cfg, weights, client=client)), runs, warmup=1)
        print(f"{label + f', --dask local:{workers}':<38} {STREAM_IMAGES / seconds:6.1f} images/s   "
              f"(cluster start {start:.1f} s)", flush=True)


def plain_resized(im, net):
    return resize_image(im, net.w, net.h)


def letterboxed(im, net):
    return letterbox_image(im, net.w, net.h)


def resized_min(im, net):
    im = resize_min(im, net.w)
    net.resize(im.shape[2], im.shape[1])
    return im


# The networks timed, by their names in the download table: the row's name and how each prepares an image (as
# its darknet's detect or classify does: pjreddie's letterbox, the fork's plain resize, the classifier's
# shorter side). Yolo-Fastest stands for the mobile networks: depthwise layers, residual adds, an SPP block.
NETWORKS = (("yolov3-tiny", "yolov3-tiny", letterboxed), ("tiny", "tiny (Tiny Darknet)", resized_min),
            ("yolov4-tiny", "yolov4-tiny", plain_resized), ("yolo-fastest-1.1", "Yolo-Fastest 1.1", plain_resized))


def weights_file(name, shared=SHARED, mirror=None):
    """The official weights called `name` in the download table: ../shared/models' copy where the reference data
    is there, else the file in `pydarknet download`'s cache, fetched into it first when missing (its progress
    on stderr, its SHA-256 checked; `mirror`: a base URL serving the file instead). Raises DarknetError when it
    cannot be fetched."""
    model = download.model_named(name)
    copy = Path(shared) / "models" / model.file_name
    if copy.is_file():
        return copy
    if download.cached_file(model.file_name) is None:
        print(f"downloading {model.file_name} ({download.megabytes(model.size)}) into {download.cache_dir()}",
              file=sys.stderr, flush=True)
    return download.download(model, mirror, progress=tenths_shown())[0]


def tenths_shown():
    """A download's progress(done, total): a line on stderr at each tenth of the file."""
    shown = [0]

    def progress(done, total):
        if done * 10 // total > shown[0]:
            shown[0] = done * 10 // total
            print(f"  {download.megabytes(done)} of {download.megabytes(total)}", file=sys.stderr, flush=True)
    return progress


def fastest_lines(cpu, medians):
    """The summary that ends `make bench`: per network, pydarknet's fastest mode of those measured and its median
    time divided by each peer's (below 1: pydarknet is the faster). `medians`: {network: {label: seconds}},
    pydarknet's modes labelled "pydarknet <mode>", the peers by their own names."""
    lines = [f"fastest pydarknet mode on {cpu} (the peers rows: its median / each peer's; lower is better):"]
    for network, times in medians.items():
        ours = {label.removeprefix("pydarknet "): s for label, s in times.items()
                if label.removeprefix("pydarknet ") in OWN_MODES}   # not the --engine rows: those are the peers'
        if not ours:
            continue
        mode = min(ours, key=ours.get)
        peers = [f"{ours[mode] / seconds:.2f}x {label}" for label, seconds in times.items()
                 if not label.startswith("pydarknet ")]
        lines.append(f"  {network:<20} {mode:<20} {ours[mode] * 1000:7.1f} ms   {', '.join(peers) or 'no peer ran'}")
    return lines


# -- the speed targets ---------------------------------------------------------------------------------------------
FASTEST_TO_OPENVINO = 1.3   # the fastest mode: at most this times OpenVINO's faster precision (on AVX-512 CPUs)
FAST_TO_F32 = 1.0           # --fast: at most this times the faster float32 peer (ONNX Runtime f32 or OpenVINO f32)
COMMAND_TO_OPENCV = 1.3     # the whole `detect` process: at most this times the OpenCV DNN script's
OWN_MODES = ("exact", "--fast", "--int16", "--bf16")   # pydarknet's own engine (not the --engine rows' runtimes)
F32_PEERS = ("onnxruntime", "openvino")                # their rows: "<name> f32"


class Target(NamedTuple):
    """One target's verdict on one network: held True or False, None where it cannot be checked; mode: the
    pydarknet mode it is about (the one whose per-layer table says where the time goes)."""
    network: str
    mode: str
    held: bool | None
    line: str


def targets(medians, missing, vectors):
    """The speed targets against the peers rows' medians, per network: the fastest of pydarknet's own modes
    (OWN_MODES) at most FASTEST_TO_OPENVINO times OpenVINO in the faster of its rows (its default precision, bf16
    where the CPU has it, or float32: an Intel core without AMX runs OpenVINO's bf16 slower), where the kernels use
    AVX-512 (`vectors`, about.vector_width's name: elsewhere one line says the target is not for this CPU); --fast
    at most FAST_TO_F32 times the faster float32 peer on the export. medians: {network: {label: seconds}}
    (bench_peers's); missing: {network: {name: why}}, what did not run (bench_peers's). A target whose peer did not
    run cannot be checked, and its line says why, but where --fast is already slower than the one float32 peer that
    ran."""
    verdicts = []
    if vectors != "avx512f":
        verdicts.append(Target(None, None, None, f"  target: fastest mode <= {FASTEST_TO_OPENVINO}x OpenVINO: "
                                                 f"for CPUs with AVX-512, not checked (the kernels use {vectors})"))
    for network, times in medians.items():
        why = missing.get(network, {})
        ours = {label.removeprefix("pydarknet "): s for label, s in times.items()
                if label.removeprefix("pydarknet ") in OWN_MODES}
        if vectors == "avx512f":
            mode = min(ours, key=ours.get)
            head = f"  {network:<20} target: fastest mode <= {FASTEST_TO_OPENVINO}x OpenVINO:"
            peer = faster_openvino(times)
            if peer is None:
                verdicts.append(Target(network, mode, None, f"{head} cannot be checked: openvino did not run "
                                                            f"({why.get('openvino', 'no reason given')})"))
            else:
                ratio = ours[mode] / times[peer]
                verdicts.append(Target(network, mode, ratio <= FASTEST_TO_OPENVINO,
                                       f"{head} {ratio:.2f}x ({mode} / {peer}), {held(ratio, FASTEST_TO_OPENVINO)}"))
        head = (f"  {network:<20} target: --fast <= {FAST_TO_F32}x the faster float32 peer (ONNX Runtime or "
                f"OpenVINO f32):")
        peers = {f"{name} f32": times[f"{name} f32"] for name in F32_PEERS if f"{name} f32" in times}
        absent = "; ".join(f"{name} did not run ({why.get(name, 'no reason given')})" for name in F32_PEERS
                           if f"{name} f32" not in times)
        if not peers:
            verdicts.append(Target(network, "--fast", None, f"{head} cannot be checked: {absent}"))
            continue
        peer = min(peers, key=peers.get)
        ratio = ours["--fast"] / peers[peer]
        if absent and ratio <= FAST_TO_F32:
            verdicts.append(Target(network, "--fast", None, f"{head} {ratio:.2f}x (--fast / {peer}), cannot be "
                                                            f"checked: {absent}"))
        else:
            verdicts.append(Target(network, "--fast", ratio <= FAST_TO_F32,
                                   f"{head} {ratio:.2f}x (--fast / {peer}), {held(ratio, FAST_TO_F32)}"))
    return verdicts


def command_target(ours, theirs, runs):
    """The start-up target's line: the whole `detect` process of yolov3-tiny on one image (warm caches) at most
    COMMAND_TO_OPENCV times the OpenCV DNN script doing the same job, from bench_detect_command's medians of
    `runs` runs each."""
    ratio = ours / theirs
    return (f"  {'detect command':<20} target: the whole process <= {COMMAND_TO_OPENCV}x the OpenCV DNN script: "
            f"{ratio:.2f}x ({ours * 1000:.0f} / {theirs * 1000:.0f} ms, medians of {runs} runs each), "
            f"{held(ratio, COMMAND_TO_OPENCV)}")


def held(ratio, bound):
    return "held" if ratio <= bound else "not held"


LAYER_MODES = ("exact", "fast", "int16", "bf16")   # --layers' MODE


def products_name(mode):
    """The products (kernels.products' name) of a mode as the peers rows name it: "exact" or "--fast", ..."""
    return "darknet" if mode == "exact" else mode.removeprefix("--")


def bench_layers(name, cfg, weights, image, prepare, mode, runs):
    """The per-layer table (tools/bench/layers.py) of the network in `mode` ("exact", "--fast", "--int16",
    "--bf16"), on the peers rows' input and threads: medians of `runs` runs of its own."""
    import numba

    net = Network(cfg, quiet_unused=True)
    net.load(weights)
    net.products = products.products_for(products_name(mode))
    x = prepare(load_image(image), net)[None]
    rows, forward = time_layers(net, x, runs)
    ran = "exact" if net.products.name == "darknet" else f"--{net.products.name}"
    title = (f"layers of {name} {x.shape[3]}x{x.shape[2]} in {ran}, {numba.get_num_threads()} threads: medians of "
             f"{runs} passes layer by layer, each in turn with a whole forward")
    # the peer the mode's target names: OpenVINO in float32 for the float32 modes, else in its faster precision
    # here (engines.openvino_precision's choice with no mode; None: its default)
    precision = "f32" if ran in ("exact", "--fast") else openvino_plain_precision()
    peer = peer_layers(net, x, runs, precision, numba.get_num_threads())
    print("\n".join(table_lines(title, rows, forward, peer, f"ov {precision or 'default'}")), flush=True)


# -- training ---------------------------------------------------------------------------------------------------
DARKNET_GOLDEN_TRAIN = 0.226   # s/iteration as darknet (AlexeyAB, CPU) printed it, golden/map/shapes-tiny.cfg, 2 cores
PJREDDIE_GOLDEN_TRAIN = 0.245  # the same with pjreddie's darknet (../shared/README.md)
TRAIN_IMAGES = 64              # the set `pydarknet datasets shapes` makes for the runs, shorter than its default
# Iterations left out before the timed ones: a cold cache compiles the kernels in the first (a minute) and the
# fourth (a second), and the loader's threads fill their queue.
SETTLE = 5
ITERATION_LINE = re.compile(r"^\d+: .*, ([\d.]+) seconds, \d+ images$")   # what `train` prints per iteration


def fixed_copy(cfg_path, batch, folder):
    """A copy of the cfg whose [net] says batch=`batch`, subdivisions=1 (one batch per iteration), and with
    random=0 (trained at the cfg's size throughout, the size the row names)."""
    text = Path(cfg_path).read_text()
    net_end = re.search(r"^\[(?!net\])", text, re.M).start()
    head, rest = text[:net_end], text[net_end:]
    head = re.sub(r"^\s*(batch|subdivisions)\s*=.*$", "", head, flags=re.M)
    head = head.replace("[net]", f"[net]\nbatch={batch}\nsubdivisions=1", 1)
    rest = re.sub(r"^\s*random\s*=.*$", "random=0", rest, flags=re.M)
    path = Path(folder) / Path(cfg_path).name
    path.write_text(head + rest)
    return path


def train_run(data, cfg, iterations, folder):
    """Run `pydarknet train`'s loop (train.run.TrainingRun: its loader threads, its step, its printed line) for
    `iterations`: the seconds each iteration's line printed, the seconds of each one's step (forward, backward,
    update) alone, and the network."""
    from pydarknet.tasks.train.run import TrainingRun
    printed = io.StringIO()
    run = TrainingRun(data, cfg, backup=Path(folder) / "backup", chart=False, out=printed, max_batches=iterations)
    run.net.quiet = True
    step, steps = run.train_step, []

    def timed_step(x, y):
        start = time.perf_counter()
        loss = step(x, y)
        steps.append(time.perf_counter() - start)
        return loss
    run.train_step = timed_step
    run.run()
    lines = [float(m[1]) for m in map(ITERATION_LINE.match, printed.getvalue().splitlines()) if m]
    return lines, steps, run.net


def bench_train(name, data, cfg, runs, folder, reference=None):
    """The median of what `train` prints per iteration, and of the steps alone, after the first SETTLE."""
    printed, steps, net = train_run(data, cfg, SETTLE + runs, folder)
    seconds, step = statistics.median(printed[SETTLE:]), statistics.median(steps[SETTLE:])
    line = (f"train {name:<34} batch {net.batch:3d}  {seconds:6.3f} s/iteration (step {step:.3f})  "
            f"{net.batch / seconds:6.1f} images/s")
    if reference:
        line += "   " + reference(seconds)
    print(line, flush=True)


def main_train(args):
    import numba

    from pydarknet.files.config import chatter
    from pydarknet.files.datasets import write_shapes
    print(f"training: seconds per iteration as `pydarknet train` prints them (the wait for its loader's next batch, "
          f"forward, backward, update), median of iterations {SETTLE + 1}-{SETTLE + args.runs} (the first {SETTLE} "
          f"compile and fill the loader)\n  step: forward + backward + update alone in the same iterations; "
          f"{TRAIN_IMAGES} images of `pydarknet datasets shapes`; products: {products.backend()}; "
          f"{numba.get_num_threads()} Numba threads", flush=True)
    chatter["quiet"] = True   # the runs' notes (the weights saved at the end) are not the bench's
    with tempfile.TemporaryDirectory() as folder:
        data = write_shapes(Path(folder) / "shapes", train=TRAIN_IMAGES, valid=0)
        cfg = shipped_root() / "cfg"
        bench_train("cfg/shapes-tiny.cfg 160x160", data, cfg / "shapes-tiny.cfg", args.runs, folder)
        bench_train("yolov3-tiny 416x416", data, fixed_copy(cfg / "yolov3-tiny.cfg", 8, folder), args.runs, folder)
        golden = args.shared / "golden" / "map" / "shapes-tiny.cfg"
        if golden.exists():
            bench_train("golden/map/shapes-tiny.cfg 160x160", data, golden, args.runs, folder,
                        lambda s: f"darknet {DARKNET_GOLDEN_TRAIN:.3f} s (pjreddie {PJREDDIE_GOLDEN_TRAIN:.3f}): "
                                  f"ratio {s / DARKNET_GOLDEN_TRAIN:4.2f}x")
        else:
            print(f"bench: {golden} not found (the shared reference data: darknet's figure is for that cfg), skipped",
                  file=sys.stderr)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=SHARED, type=Path,
                        help="the shared reference data, used where present: its models/ (else the download "
                             "cache's) and golden/map/shapes-tiny.cfg (darknet's training figure)")
    parser.add_argument("--mirror", metavar="BASE_URL", default=None,
                        help="fetch missing weights from BASE_URL/<file name> (as `pydarknet download --mirror`)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per case (default 15, training 10)")
    parser.add_argument("--train", action="store_true", help="time training iterations instead (make bench-train)")
    parser.add_argument("--layers", nargs=2, metavar=("NETWORK", "MODE"),
                        help=f"only the per-layer table of NETWORK ({', '.join(name for name, _, _ in NETWORKS)}) "
                             f"in MODE ({', '.join(LAYER_MODES)})")
    args = parser.parse_args(argv)
    if args.train:
        args.runs = args.runs or 10
        return main_train(args)
    args.runs = args.runs or 15
    if args.layers:
        network, mode = args.layers
        if network not in [name for name, _, _ in NETWORKS] or mode not in LAYER_MODES:
            parser.error(f"--layers {network} {mode}: expected a network of "
                         f"{', '.join(name for name, _, _ in NETWORKS)} and a mode of {', '.join(LAYER_MODES)}")
    try:
        weights = {name: weights_file(name, args.shared, args.mirror) for name, _, _ in NETWORKS
                   if not args.layers or name == args.layers[0]}
    except DarknetError as e:
        print(f"pydarknet: error: {e}", file=sys.stderr)
        return 1
    cfg, images = shipped_root() / "cfg", shipped_root() / "data"
    dog = images / "dog.jpg"
    print(cpu_line(), flush=True)
    if args.layers:
        network, mode = args.layers
        label, prepare = next((label, prepare) for name, label, prepare in NETWORKS if name == network)
        bench_layers(label, cfg / f"{network}.cfg", weights[network], dog, prepare,
                     "exact" if mode == "exact" else f"--{mode}", args.runs)
        return 0
    for name, label, prepare in NETWORKS:
        bench_forward(label, cfg / f"{name}.cfg", weights[name], dog, prepare, args.runs)
    peers = {label: bench_peers(label, cfg / f"{name}.cfg", weights[name], dog, prepare, args.runs)
             for name, label, prepare in NETWORKS}
    missing = {label: why for label, (_, _, why) in peers.items()}
    timings = {PAUSED: {label: times for label, (times, _, _) in peers.items()},
               STREAMED: {label: times for label, (_, times, _) in peers.items()}}
    print(f"numpy float32 matmul 2048^3: {matmul_limit(args.runs):.0f} GFLOP/s", flush=True)
    yolo = cfg / "yolov3-tiny.cfg", weights["yolov3-tiny"]
    samples = [images / name for name in ("dog.jpg", "person.jpg", "eagle.jpg")]
    bench_stream("yolov3-tiny", *yolo, samples, min(args.runs, 5))
    bench_dask("yolov3-tiny", *yolo, samples, min(args.runs, 5))
    with tempfile.TemporaryDirectory() as folder:
        bench_decode(dog, max(args.runs, 30))
        bench_decode(big_jpeg(dog, folder), max(args.runs, 30))
        command = bench_detect_command(*yolo, dog, args.runs, folder)
    missed = []
    for timing, medians in timings.items():
        print("\n".join(fastest_lines(f"{cpu_model()}, {timing}", medians)), flush=True)
    for timing, medians in timings.items():
        verdicts = targets(medians, missing, vector_width()[0])
        print(f"speed targets on {cpu_model()}, {timing} (the peers rows' medians; held where the ratio is at most "
              f"the bound):")
        print("\n".join(verdict.line for verdict in verdicts), flush=True)
        missed += [(v.network, v.mode) for v in verdicts if v.held is False]
    print(command_target(*command, args.runs), flush=True)
    for label, mode in dict.fromkeys(missed):
        name, prepare = next((name, prepare) for name, row, prepare in NETWORKS if row == label)
        bench_layers(label, cfg / f"{name}.cfg", weights[name], dog, prepare, mode, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
