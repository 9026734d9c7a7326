"""The `pydarknet` command: darknet's commands and flags, for people and for shell pipelines.

Results go to stdout, chatter (layer table, warnings) to stderr. Errors are one line on stderr and a
non-zero exit: 1 for bad input files, 2 for usage; a traceback only with --debug.
"""
import gc
import json
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from .config import DarknetError, chatter, note, read_data_cfg, read_names, warn
from .resources import find_file, local_copy
from .stream import FirstAhead, batch_results

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class Failures:
    """Counts per-image errors so a batch goes on and the exit status still tells."""
    count = 0


def use_fast_products(ctx, param, fast):
    if fast:
        from .predict import use_fast
        use_fast(fast)


def common(fn):
    """Options every command takes."""
    fn = click.option("--fast", is_flag=True, expose_value=False, callback=use_fast_products,
                      help="Faster products (fused multiply-add, Winograd): not darknet's bit-exact numbers, "
                           "within 1e-3 of them.")(fn)
    fn = click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, help="No chatter on stderr (errors still show).",
                      callback=lambda ctx, param, value: chatter.update(quiet=value))(fn)
    return fn


def image_options(fn):
    fn = click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line on stdout.")(fn)
    fn = click.option("--decoder", type=click.Choice(["darknet", "opencv"]), default="darknet", show_default=True,
                      help="JPEG decoder: darknet's exact pixels, or OpenCV's (faster, not darknet-exact).")(fn)
    return fn


def darknet_option(fn):
    return click.option("--darknet", type=click.Choice(["ab", "pjreddie"]), default=None,
                        help="Follow this darknet's arithmetic and defaults: the AlexeyAB fork's or pjreddie's "
                             "[chosen from the cfg's options and the weights' revision].")(fn)


def image_paths(images):
    """The images named on the command line, else one path per line of stdin."""
    if images:
        yield from images
        return
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("Enter Image Path: ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        line = line.strip()
        if line:
            yield line


def load_names(data_file, classes, cfg):
    """Class names from a .data file (`names=`, else `labels=`), warning when there are too few. More names
    than classes is darknet's own imagenet1k.data: the 21842-name list whose first 1000 are the classes."""
    data = read_data_cfg(data_file)
    name_list = data.str("names") or data.str("labels")
    if not name_list:
        raise DarknetError(f"{data_file}: no names= or labels= line")
    path = find_file(name_list, beside=data_file, what="names file")
    names = read_names(path)
    if classes and len(names) < classes:
        warn(f"{path} has {len(names)} names but {cfg} has {classes} classes")
    return names, data


def default_data(name):
    """Darknet's shortcuts read cfg/coco.data or cfg/imagenet1k.data from the working directory; we fall back
    to the copies pydarknet ships."""
    return str(find_file(f"cfg/{name}", what="data file"))


def load_network(cfg, weights, darknet=None, table=True):
    """Build and load a network, showing darknet's layer table on stderr as darknet does at load. A cfg or
    weights given as a URL is read through fsspec."""
    from .network import Network
    net = Network(local_copy(cfg), darknet=darknet)
    if table:
        note("\n".join(net.summary()))
    net.load(local_copy(weights))
    if table:
        note(net.darknet_line())
    return net


def report_error(error):
    print(f"pydarknet: error: {error}", file=sys.stderr)
    Failures.count += 1


def for_each_batch(images, prepare, run_batch, show, batch=1):
    """The images named (or read from stdin), `batch` at a time through the network: prepare(path) loads one
    and makes the network's input, in a background thread a batch ahead; run_batch(prepared list) gives their
    results; show(path, prepared, result) prints one. Results come in input order; an image that cannot be
    used is reported and the others go on. Paths typed at a terminal go one at a time, as they come."""
    interactive = not images and sys.stdin.isatty()
    batch = 1 if interactive else batch
    show_each(batch_results(image_paths(images), prepare, run_batch, batch, 0 if interactive else batch), show)


def on_cluster(address, predict, images, show, *args, **options):
    """The images named (or read from stdin) through pydarknet.distributed's `predict` (detect or classify) on
    the Dask cluster at `address`, each result shown as for_each_batch shows it (show(path, None, result)), in
    input order unless options say ordered=False."""
    from . import distributed
    if not images and sys.stdin.isatty():
        options.update(chunk=1, window=1)   # paths typed at a terminal go one at a time, as they come
    with distributed.connect(address) as client:
        results = getattr(distributed, predict)(image_paths(images), *args, client=client, **options)
        show_each(((path, None, result) for path, result in results), show)


@contextmanager
def evaluation_images(address, cfg, weights, darknet):
    """evaluate.py's runner of the per-image work: None (this process), or the Dask cluster's at `address`."""
    if address is None:
        yield None
        return
    from . import distributed
    with distributed.connect(address) as client, distributed.evaluation(client, cfg, weights, darknet) as images:
        yield images


def show_each(outcomes, show):
    """show(path, prepared, result) for each (path, prepared, result) of `outcomes` (stream.batch_results' or a
    cluster's), a DarknetError in place of the result reported as one line instead."""
    for path, prepared, outcome in outcomes:
        try:
            if isinstance(outcome, DarknetError):
                raise outcome
            show(path, prepared, outcome)
        except DarknetError as e:
            report_error(e)
        sys.stdout.flush()


def dask_option(fn):
    return click.option("--dask", "dask", metavar="ADDRESS", default=None,
                        help="Run on a Dask cluster: a scheduler's address (tcp://host:8786), or local:N for N worker "
                             "processes on this machine (pip install 'pydarknet[dask]').")(fn)


def cluster_options(fn):
    """--dask and --unordered: the commands that print a result per image."""
    fn = click.option("--unordered", is_flag=True,
                      help="With --dask: print each image's result as soon as it is ready, not in input order.")(fn)
    return dask_option(fn)


def batch_option(fn):
    return click.option("-batch", "batch", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Images per forward pass (the results are the same at any batch size).")(fn)


def c_float(value, spec="f"):
    """`value` as C's printf prints it with %<spec>: Python's formatting, except that inf and NaN come out as
    glibc writes them: inf, -inf, nan, -nan (a NaN's sign bit shows)."""
    value = float(value)
    if math.isfinite(value):
        return format(value, spec)
    text = ("-" if math.copysign(1, value) < 0 else "") + ("nan" if value != value else "inf")
    width = spec.split(".")[0].rstrip("f")
    return text.rjust(int(width)) if width else text


def json_line(doc):
    """One line of strict JSON: inf and NaN written as null."""
    from .predict import strict_json
    return json.dumps(strict_json(doc), allow_nan=False)


# -- detect ---------------------------------------------------------------------------------------------------
def detection_line(d, ext_output):
    """One printed detection, as both darknets print it (the percentage of darknet's float32 prob * 100)."""
    line = f"{d.name}: {float(np.float32(d.prob) * np.float32(100)):.0f}%"
    if ext_output:
        left, top, width, height = (c_float(v, "4.0f") for v in d.pixels)
        line += f"\t(left_x: {left}   top_y: {top}   width: {width}   height: {height})"
    return line


# The fork's detection_to_json keeps every class over this (the boxes were already cut at the threshold).
FORK_JSON_THRESH = np.float32(0.005)


def fork_json_frame(frame_id, path, result):
    """One image's entry of the fork's `-out` JSON file, spaced as its detection_to_json writes it (but with null
    where the fork writes inf or nan, which are not JSON)."""
    def number(v):
        return f"{v:f}" if math.isfinite(v) else "null"

    objects = []
    for d in result.detections:
        if np.float32(d.prob) > FORK_JSON_THRESH and not d.name.startswith("dont_show"):
            x, y, w, h = (number(v) for v in d.box)
            objects.append(f'  {{"class_id":{d.class_id}, "name":{json.dumps(d.name)}, "relative_coordinates":'
                           f'{{"center_x":{x}, "center_y":{y}, "width":{w}, "height":{h}}}, '
                           f'"confidence":{d.prob:f}}}')
    return (f'{{\n "frame_id":{frame_id}, \n "filename":{json.dumps(path)}, \n "objects": [ \n'
            + ", \n".join(objects) + "\n ] \n}")


def run_detect(data_file, cfg, weights, images, thresh, hier, nms, ext_output, out, save_labels, letterbox,
               as_json, decoder, darknet=None, batch=1, dask=None, unordered=False):
    """darknet's `detect` and `detector test`. A network of the fork's prints as the fork does (milliseconds,
    detections by left edge); pjreddie's as pjreddie does. `thresh`, `letterbox`: None for the darknet's
    default. `out`: a name ending in .json gets the fork's JSON file of the whole run; any other names the
    drawn image. `batch`: images per forward pass. `dask`: the address of a Dask cluster to detect on (this
    process then only prints, draws and labels; `unordered`: in the order results come)."""
    from .image import load_image, save_image, to_bgr8
    from .predict import Detector

    paths = list(images) if images else None
    load = FirstAhead(lambda path: load_image(path, decoder), paths if dask is None else None)
    net = load_network(cfg, weights, darknet)
    detector = Detector(cfg, weights, letterbox=letterbox, decoder=decoder, network=net)
    detector.names, _ = load_names(data_file, detector.classes, cfg)
    fork = net.darknet == "ab"
    json_out = out if out is not None and out.lower().endswith(".json") else None
    image_base = None if json_out else out
    drawing = image_base is not None or not as_json
    count = [0]

    def prepare(path):
        im = load(path)
        return im, detector.prepare(im)

    def show(path, loaded, result):
        result.image = path
        count[0] += 1
        if as_json:
            print(json_line(result.as_json()))
        elif fork:
            print(f"{path}: Predicted in {result.seconds * 1000:f} milli-seconds.")
            for d in result.fork_order():
                print(detection_line(d, ext_output))
        else:
            print(f"{path}: Predicted in {result.seconds:f} seconds.")
            for d in result.detections:
                print(detection_line(d, ext_output))
        if json_file is not None:
            json_file.write(("" if count[0] == 1 else ", \n") + fork_json_frame(count[0], path, result))
            json_file.flush()
        if (drawing or save_labels) and len(result.finite_boxes()) < len(result.boxes):
            warn(f"{path}: {len(result.boxes) - len(result.finite_boxes())} boxes with an inf or NaN coordinate "
                 f"are not {' or '.join(w for w, on in (('drawn', drawing), ('labelled', save_labels)) if on)}")
        if save_labels:
            write_labels(path, result)
        if drawing:
            im = loaded[0] if loaded else load_image(path, decoder)   # a cluster's results come without pixels
            base = image_base or "predictions"
            if paths is None or len(paths) > 1:
                base = f"{base}_{count[0]}"
            note(f"saved {save_image(detector.draw(to_bgr8(im), result), base)}")

    def run_batch(loaded):
        return detector.detect_batch([prepared for _, prepared in loaded], thresh, hier, nms)

    json_file = open(json_out, "w") if json_out else None
    try:
        if json_file is not None:
            json_file.write("[\n")
        if dask is None:
            for_each_batch(paths, prepare, run_batch, show, batch)
        else:
            on_cluster(dask, "detect", paths, show, cfg, weights, names=detector.names, thresh=thresh,
                       hier_thresh=hier, nms=nms, letterbox=letterbox, decoder=decoder, darknet=darknet, batch=batch,
                       ordered=not unordered)
    finally:
        if json_file is not None:
            json_file.write("\n]")
            json_file.close()
            note(f"saved {json_out}")


def write_labels(image_path, result):
    """YOLO-format labels beside the image: the best class of each box, as AlexeyAB's -save_labels (boxes with an
    inf or NaN coordinate left out)."""
    lines = []
    for box, scored in result.finite_boxes():
        best = max(scored, key=lambda s: s[1])[0]  # the first of equal maxima, as darknet's strict '>'
        lines.append("%d %2.4f %2.4f %2.4f %2.4f\n" % ((best,) + box))
    Path(image_path).with_suffix(".txt").write_text("".join(lines))


def detection_options(fn):
    """The options of every command that detects: `detect`, `detector test` and the demos."""
    fn = batch_option(fn)
    fn = click.option("-dont_show", "dont_show", is_flag=True, help="Accepted for AlexeyAB compatibility (no window).")(fn)
    fn = click.option("-ext_output", "ext_output", is_flag=True, help="Print each box in pixels, as AlexeyAB.")(fn)
    fn = click.option("-letter_box", "-letterbox", "letter_box", is_flag=True,
                      help="Letterbox the input [pjreddie's networks; AlexeyAB's when the cfg says letter_box=1].")(fn)
    fn = click.option("-resize", "resize", is_flag=True, help="Plain resize to the network size [AlexeyAB's networks].")(fn)
    fn = click.option("-nms", "nms", type=float, default=0.45, show_default=True, help="NMS IoU threshold.")(fn)
    fn = click.option("-hier", "hier", type=float, default=0.5, show_default=True, help="Hierarchical threshold.")(fn)
    fn = click.option("-thresh", "thresh", type=float, default=None,
                      help="Detection threshold [.25 for AlexeyAB's networks, .5 for pjreddie's].")(fn)
    return fn


def detect_options(fn):
    fn = cluster_options(fn)
    fn = click.option("-save_labels", "save_labels", is_flag=True, help="Write YOLO labels (.txt) beside each image.")(fn)
    fn = click.option("-out", "out", default=None,
                      help="Base name of the drawn image [predictions]; a name ending in .json: AlexeyAB's JSON "
                           "file of all the detections instead.")(fn)
    return detection_options(fn)


def letterbox_of(letter_box, resize):
    """-letter_box / -resize as Detector's letterbox: None (neither) for the network's darknet's default."""
    if letter_box and resize:
        raise click.UsageError("-letter_box and -resize exclude each other")
    return True if letter_box else False if resize else None


@click.group(context_settings=CONTEXT)
def cli():
    """darknet's commands, same cfg and weights files, same answers."""


@cli.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("images", nargs=-1)
@detect_options
@image_options
@darknet_option
@common
def detect(cfg, weights, images, thresh, hier, nms, resize, letter_box, ext_output, out, dont_show, save_labels,
           batch, dask, unordered, as_json, decoder, darknet, quiet, debug):
    """Detect objects (COCO names from cfg/coco.data), like `darknet detect`."""
    run_detect(default_data("coco.data"), cfg, weights, images, thresh, hier, nms, ext_output, out, save_labels,
               letterbox_of(letter_box, resize), as_json, decoder, darknet, batch, dask, unordered)


@cli.group(context_settings=CONTEXT)
def detector():
    """darknet's `detector` commands."""


@detector.command("test", context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights")
@click.argument("images", nargs=-1)
@detect_options
@image_options
@darknet_option
@common
def detector_test(data, cfg, weights, images, thresh, hier, nms, resize, letter_box, ext_output, out, dont_show,
                  save_labels, batch, dask, unordered, as_json, decoder, darknet, quiet, debug):
    """Detect objects with the names of a .data file."""
    run_detect(data, cfg, weights, images, thresh, hier, nms, ext_output, out, save_labels,
               letterbox_of(letter_box, resize), as_json, decoder, darknet, batch, dask, unordered)


# -- demo -----------------------------------------------------------------------------------------------------
def run_demo(data_file, cfg, weights, source, camera, thresh, hier, nms, letterbox, ext_output, out_filename, prefix,
             frame_skip, time_limit, batch, as_json, darknet=None):
    """The fork's `detector demo`: detection on each frame of a video, image sequence, stream or camera."""
    from .predict import Detector
    from .video import Video, frame_json, objects_lines, run_demo as detect_video

    if source is not None and camera is not None:
        raise click.UsageError("give a SOURCE or -c CAMERA, not both")
    video = Video(source, camera)
    net = load_network(cfg, weights, darknet)
    detector = Detector(cfg, weights, letterbox=letterbox, network=net)
    detector.names, _ = load_names(data_file, detector.classes, cfg)
    note(f"video: {video.name}, {video.fps:g} fps" + (f", {video.frame_count} frames" if video.frame_count else ""))

    def show(frame, result, rate):
        if as_json:
            print(json_line(frame_json(frame, result)))
        else:
            print("\n".join(["Objects:", "", *objects_lines(result, detector.names, ext_output), "",
                             f"FPS:{rate.fps:.1f} \t AVG_FPS:{rate.avg_fps:.1f}"]))
        sys.stdout.flush()

    started = time.perf_counter()

    def frames_and_rate(done, total):
        return f"{done}/{total} frames, {done / max(time.perf_counter() - started, 1e-9):.1f} fps"

    # the bar (with click's time left) on a file of known length; the Objects lines tell progress on a terminal
    progress = progress_bar("demo", lines_on_stdout=True, describe=frames_and_rate) if video.frame_count else None
    detected = detect_video(detector, video, show, thresh, hier, nms, batch=batch, frame_skip=frame_skip,
                            out_filename=out_filename, prefix=prefix, time_limit=time_limit, progress=progress)
    note(f"{detected} frames detected; input video stream closed")


def demo_options(fn):
    fn = click.option("-time_limit_sec", "time_limit", type=click.FloatRange(min=0), default=0,
                      help="Stop after this many seconds [no limit].")(fn)
    fn = click.option("-frame_skip", "-s", "frame_skip", type=click.IntRange(min=0), default=0, show_default=True,
                      help="Detect one frame, then skip N (written to -out_filename with the boxes found last).")(fn)
    fn = click.option("-prefix", "prefix", default=None, help="Write each annotated frame as PREFIX_%08d.jpg "
                      "(numbered from the source's first frame, 1).")(fn)
    fn = click.option("-out_filename", "out_filename", default=None,
                      help="Write the annotated video: .mp4 (mp4v), .avi (MJPG) or .mkv (mp4v), the source's size "
                           "and frame rate.")(fn)
    fn = click.option("-c", "camera", type=click.IntRange(min=0), default=None, help="Camera number (no SOURCE).")(fn)
    fn = click.option("--json", "as_json", is_flag=True,
                      help='One JSON object per frame per line on stdout: "frame" (from 1), "time" (seconds into '
                           'the video), then as detect\'s.')(fn)
    return detection_options(fn)


@detector.command("demo", context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights")
@click.argument("source", required=False)
@demo_options
@darknet_option
@common
def detector_demo(data, cfg, weights, source, thresh, hier, nms, resize, letter_box, ext_output, dont_show, batch,
                  as_json, camera, out_filename, prefix, frame_skip, time_limit, darknet, quiet, debug):
    """Detect objects in a video file, image sequence (frame_%04d.png), stream URL or camera (-c N [0])."""
    run_demo(data, cfg, weights, source, camera, thresh, hier, nms, letterbox_of(letter_box, resize), ext_output,
             out_filename, prefix, frame_skip, time_limit, batch, as_json, darknet)


@cli.command("demo", context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("source", required=False)
@demo_options
@darknet_option
@common
def demo(cfg, weights, source, thresh, hier, nms, resize, letter_box, ext_output, dont_show, batch, as_json, camera,
         out_filename, prefix, frame_skip, time_limit, darknet, quiet, debug):
    """`detector demo` with the COCO names of cfg/coco.data."""
    run_demo(default_data("coco.data"), cfg, weights, source, camera, thresh, hier, nms,
             letterbox_of(letter_box, resize), ext_output, out_filename, prefix, frame_skip, time_limit, batch,
             as_json, darknet)


# -- classify -------------------------------------------------------------------------------------------------
def run_classify(data_file, cfg, weights, images, top, preprocess, as_json, decoder, darknet=None, batch=1, dask=None,
                 unordered=False):
    """darknet's `classify` and `classifier predict`. `batch`: images per forward pass; with the default
    resize_min preprocessing the images of a batch share a pass only when they have the same shape. `dask`,
    `unordered`: as run_detect's."""
    from .image import load_image
    from .predict import Classifier

    load = FirstAhead(lambda path: load_image(path, decoder), list(images) if images and dask is None else None)
    net = load_network(cfg, weights, darknet)
    outputs = int(net.output_layer.out_shape[0] * net.output_layer.out_shape[1] * net.output_layer.out_shape[2])
    names, data = load_names(data_file, outputs, cfg)
    top = top or data.int("top", 1)
    classifier = Classifier(cfg, weights, names=names, preprocess=preprocess, decoder=decoder, network=net)

    def show(path, _, result):
        result.image = path
        if as_json:
            print(json_line(result.as_json()))
        else:
            print(f"{path}: Predicted in {result.seconds:f} seconds.")
            for _, name, prob in result.predictions:
                print(f"{name}: {c_float(prob)}")

    if dask is None:
        for_each_batch(images, lambda path: classifier.prepare(load(path)),
                       lambda prepared: classifier.classify_batch(prepared, top), show, batch)
    else:
        on_cluster(dask, "classify", images, show, cfg, weights, names=names, top=top, preprocess=preprocess,
                   decoder=decoder, darknet=darknet, batch=batch, ordered=not unordered)


def classify_options(fn):
    fn = cluster_options(fn)
    fn = batch_option(fn)
    fn = click.option("-resize", "resize", is_flag=True, help="Plain resize to the network size.")(fn)
    fn = click.option("-letter_box", "-letterbox", "letter_box", is_flag=True, help="Letterbox to the network size.")(fn)
    fn = click.option("-top", "top", type=int, default=0, help="How many classes to print [data file's top=, or 5].")(fn)
    return fn


def preprocess_of(letter_box, resize):
    if letter_box and resize:
        raise click.UsageError("-letter_box and -resize exclude each other")
    return "letterbox" if letter_box else "resize" if resize else "resize_min"


@cli.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("images", nargs=-1)
@classify_options
@image_options
@darknet_option
@common
def classify(cfg, weights, images, top, letter_box, resize, batch, dask, unordered, as_json, decoder, darknet, quiet,
             debug):
    """Classify images (ImageNet names from cfg/imagenet1k.data), like `darknet classify`: top 5."""
    run_classify(default_data("imagenet1k.data"), cfg, weights, images, top or 5, preprocess_of(letter_box, resize),
                 as_json, decoder, darknet, batch, dask, unordered)


@cli.group(context_settings=CONTEXT)
def classifier():
    """darknet's `classifier` commands."""


@classifier.command("predict", context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights")
@click.argument("images", nargs=-1)
@classify_options
@image_options
@darknet_option
@common
def classifier_predict(data, cfg, weights, images, top, letter_box, resize, batch, dask, unordered, as_json, decoder,
                       darknet, quiet, debug):
    """Classify images with the names (and top=) of a .data file."""
    run_classify(data, cfg, weights, images, top, preprocess_of(letter_box, resize), as_json, decoder, darknet,
                 batch, dask, unordered)


# -- summary --------------------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights", required=False)
@darknet_option
@common
def summary(cfg, weights, darknet, quiet, debug):
    """Print darknet's layer table with BFLOPs and parameter counts (aliases: print, ops)."""
    from .network import Network
    net = Network(cfg, darknet=darknet)
    if weights:
        net.load(weights)
    print("\n".join(net.summary()))
    flops = sum(layer.flops() for layer in net.layers)
    params = sum(a.size for layer in net.layers for a in layer.weight_arrays())
    print(f"Total BFLOPS {flops / 1e9:.3f}")
    print(f"Parameters {params}")
    print(net.darknet_line())


cli.add_command(summary, "print")
cli.add_command(summary, "ops")


# -- progress -------------------------------------------------------------------------------------------------
def stderr_is_terminal():
    return sys.stderr.isatty()


def progress_bar(label, lines_on_stdout=False, describe=None):
    """A progress callback, progress(done, total), drawing click's bar (with the time left) on stderr when
    stderr is a terminal and not -q; else None. `lines_on_stdout`: the command prints a line per item, which
    is progress enough when stdout is a terminal too. `describe(done, total)`: the text after the bar
    [done/total]."""
    if chatter["quiet"] or not stderr_is_terminal() or (lines_on_stdout and sys.stdout.isatty()):
        return None
    bar = None

    def show(done, total):
        nonlocal bar
        if bar is None:
            shown = None if describe is None else lambda item: item and describe(*item)
            bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=describe is None,
                                    item_show_func=shown)
        bar.update(done - bar.pos, (done, total))
        if done >= total:
            bar.render_finish()
            bar = None
    return show


# -- evaluation -----------------------------------------------------------------------------------------------
def print_lines(lines):
    for line in lines:
        print(line)


@detector.command("map", context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights")
@click.option("-points", "points", type=click.Choice(["0", "11", "101"]), default="0", show_default=True,
              help="0: area under the curve; 11: VOC2007; 101: COCO.")
@click.option("-thresh", "thresh", type=float, default=0.25, show_default=True, help="For TP/FP/precision/recall.")
@click.option("-iou_thresh", "iou_thresh", type=float, default=0.5, show_default=True, help="IoU of a match.")
@click.option("-letter_box", "-letterbox", "letter_box", is_flag=True, help="Letterbox the images (else as the cfg).")
@click.option("--json", "as_json", is_flag=True, help="Add a JSON summary line at the end.")
@dask_option
@darknet_option
@common
def detector_map(data, cfg, weights, points, thresh, iou_thresh, letter_box, as_json, dask, darknet, quiet, debug):
    """mAP over valid= as AlexeyAB's `detector map` prints it."""
    from .evaluate import run_map
    net = load_network(cfg, weights, darknet, table=False)
    with evaluation_images(dask, cfg, weights, darknet) as images:
        lines, summary = run_map(data, cfg, weights, thresh=thresh, iou_thresh=iou_thresh, points=int(points),
                                 letter_box=letter_box, progress=progress_bar("map"), network=net, images=images)
    print_lines(lines)
    if as_json:
        print(json_line(summary))


@detector.command("valid", context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights")
@click.option("-out", "out", default=None, help="Results folder [the data file's results=, else results].")
@dask_option
@darknet_option
@common
def detector_valid(data, cfg, weights, out, dask, darknet, quiet, debug):
    """Write VOC (comp4_det_test_<class>.txt) or COCO (eval=coco) result files for valid=."""
    from .evaluate import run_valid
    net = load_network(cfg, weights, darknet, table=False)
    with evaluation_images(dask, cfg, weights, darknet) as images:
        files, _ = run_valid(data, cfg, weights, out_dir=out, progress=progress_bar("valid"), network=net,
                             images=images)
    for path in files:
        note(f"wrote {path}")


@detector.command("recall", context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights")
@dask_option
@darknet_option
@common
def detector_recall(data, cfg, weights, dask, darknet, quiet, debug):
    """pjreddie's running recall and IoU over valid=."""
    from .evaluate import run_recall
    net = load_network(cfg, weights, darknet, table=False)
    with evaluation_images(dask, cfg, weights, darknet) as images:
        run_recall(data, cfg, weights, on_line=lambda line: print(line, flush=True),
                   progress=progress_bar("recall", lines_on_stdout=True), network=net, images=images)


@classifier.command("valid", context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights")
@click.option("--strict-labels", is_flag=True, help="Every path must contain exactly one label.")
@dask_option
@darknet_option
@common
def classifier_valid(data, cfg, weights, strict_labels, dask, darknet, quiet, debug):
    """Top-1 and top-k accuracy over valid=, labels from the image paths."""
    from .evaluate import run_classifier_valid
    net = load_network(cfg, weights, darknet, table=False)
    with evaluation_images(dask, cfg, weights, darknet) as images:
        run_classifier_valid(data, cfg, weights, strict_labels=strict_labels,
                             progress=progress_bar("valid", lines_on_stdout=True),
                             on_line=lambda line: print(line, flush=True), network=net, images=images)


# -- training -------------------------------------------------------------------------------------------------
def train_options(fn):
    fn = click.option("--chart/--no-chart", default=True, help="Draw chart.png (loss and rate) in the backup folder.")(fn)
    fn = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data augmentation.")(fn)
    fn = click.option("--workers", type=int, default=2, show_default=True, help="Image-loading threads.")(fn)
    fn = click.option("--max-batches", "max_batches", type=int, default=None,
                      help="Stop after this many iterations [the cfg's max_batches].")(fn)
    fn = click.option("--backup", default=None, help="Folder for the weights [the data file's backup=].")(fn)
    fn = click.option("-dont_show", "dont_show", is_flag=True, help="Accepted (no window is ever shown).")(fn)
    fn = click.option("-clear", "clear", is_flag=True, help="Start counting from 0 (reset `seen`).")(fn)
    fn = click.option("-show_imgs", "show_imgs", is_flag=True,
                      help="Write every augmented training image, its truth boxes drawn, as "
                           "<backup>/aug_<iteration>_<i>.png (the fork shows them).")(fn)
    fn = click.option("-mAP_epochs", "map_epochs", type=int, default=4, show_default=True,
                      help="With -map: evaluate every this many epochs (at least every 100 iterations).")(fn)
    fn = click.option("-map", "calc_map", is_flag=True,
                      help="Evaluate mAP@0.5 on the data file's valid= list during training (after burn_in, "
                           "every -mAP_epochs epochs, and at the end); keep the best as <cfg>_best.weights.")(fn)
    return fn


def run_train(data, cfg, weights, clear, backup, max_batches, workers, seed, chart, calc_map, map_epochs,
              show_imgs):
    from .train import TrainingRun
    run = TrainingRun(data, cfg, weights, clear=clear, backup=backup, workers=workers, seed=seed, chart=chart,
                      max_batches=max_batches, calc_map=calc_map, map_epochs=map_epochs, show_imgs=show_imgs)
    if not chatter["quiet"]:
        note("\n".join(run.net.summary()))
    run.net.quiet = chatter["quiet"]
    run.run(progress=progress_bar("train", lines_on_stdout=True))


@cli.command(context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights", required=False)
@train_options
@common
def train(data, cfg, weights, clear, calc_map, map_epochs, show_imgs, dont_show, backup, max_batches, workers, seed,
          chart, quiet, debug):
    """Train a detector or a classifier (by the network's last layer) on DATA's train= list
    (also `detector train` and `classifier train`)."""
    run_train(data, cfg, weights, clear, backup, max_batches, workers, seed, chart, calc_map=calc_map,
              map_epochs=map_epochs, show_imgs=show_imgs)


detector.add_command(train, "train")
classifier.add_command(train, "train")


@cli.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("out")
@click.argument("layers", type=int)
@common
def partial(cfg, weights, out, layers, quiet, debug):
    """Keep the first LAYERS layers' weights (a pretrained backbone such as darknet53.conv.74), seen reset to 0."""
    from .network import Network
    from .weights import save_weights
    net = Network(cfg)
    net.load(weights, upto=layers)
    net.seen = 0
    save_weights(net, out, upto=layers)
    note(f"Saving weights to {out}")


# -- anchors --------------------------------------------------------------------------------------------------
def anchors_options(fn):
    fn = click.option("--cfg", "cfg", default=None, help="Also write <cfg>-anchors.cfg with these anchors, masks "
                      "and filters, and print the diff.")(fn)
    fn = click.option("-show", "show", is_flag=True, help="Draw anchors.png (boxes and centroids).")(fn)
    fn = click.option("-seed", "seed", type=int, default=0, show_default=True, help="Seed of the k-means++ starts.")(fn)
    fn = click.option("-height", "height", type=int, required=True, help="Network height.")(fn)
    fn = click.option("-width", "width", type=int, required=True, help="Network width.")(fn)
    fn = click.option("-num_of_clusters", "clusters", type=int, required=True, help="How many anchors.")(fn)
    return fn


@cli.command(context_settings=CONTEXT)
@click.argument("data")
@anchors_options
@common
def anchors(data, clusters, width, height, seed, show, cfg, quiet, debug):
    """Anchors for a dataset: IoU k-means over the train= labels, writes anchors.txt
    (also AlexeyAB's spelling `detector calc_anchors`)."""
    from .anchors import run_anchors
    print_lines(run_anchors(data, clusters, width, height, seed=seed, show=show, cfg=cfg,
                            progress=progress_bar("labels")))


detector.add_command(anchors, "calc_anchors")


# -- first steps: download, version, compile -------------------------------------------------------------------
@cli.command("download", context_settings=CONTEXT)
@click.argument("names", nargs=-1)
@click.option("--mirror", metavar="BASE_URL", default=None,
              help="Fetch BASE_URL/<file name> instead of the official address (an offline mirror).")
@common
def download_command(names, mirror, quiet, debug):
    """Fetch official weights (tiny, yolov3-tiny, ...) into the user cache, SHA-256 checked; a cut download
    resumes. Without NAME: list them. A WEIGHTS argument naming a downloaded file (`tiny.weights`) finds it."""
    from .download import download, listing, megabytes, model_named
    if not names:
        print_lines(listing())
        return
    for name in names:
        try:
            model = model_named(name)
            path, fetched = download(model, mirror, progress_bar(
                model.file_name, describe=lambda done, total: f"{megabytes(done)} of {megabytes(total)}"))
        except DarknetError as e:
            report_error(e)
            continue
        note(f"{model.name}: {'downloaded' if fetched else 'already downloaded'}; use it as {model.file_name} "
             f"with {model.cfg}")
        print(path)


@cli.command(context_settings=CONTEXT)
def version():
    """pydarknet's version, its libraries' and the CPU Numba compiles for (also `pydarknet --version`)."""
    from .about import version_lines
    print_lines(version_lines())


@cli.command("compile", context_settings=CONTEXT)
@click.option("--no-training", "no_training", is_flag=True, help="Only what detection and classification use.")
@common
def compile_command(no_training, quiet, debug):
    """Compile every kernel for this CPU into Numba's cache now (once per CPU and version; for container
    images and shared installs), instead of during the first command that needs it."""
    from .warmup import cache_folder, compile_kernels
    compile_kernels(training=not no_training, progress=progress_bar("compiling"))
    note(f"kernels compiled and cached in {cache_folder()}")


# -- export ---------------------------------------------------------------------------------------------------
def batch_size(ctx, param, value):
    """--batch: a positive number, or `dynamic` (None: the graph takes any batch size)."""
    if value == "dynamic":
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise click.BadParameter(f"{value!r}: a positive number or 'dynamic'")


@cli.group(context_settings=CONTEXT)
def export():
    """Write a network for other runtimes."""


@export.command("onnx", context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("out")
@click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True, help="ONNX opset version.")
@click.option("--batch", default="1", show_default=True, callback=batch_size,
              help="Batch size of the graph: N, or dynamic.")
@click.option("--decode", is_flag=True,
              help="Outputs boxes (relative to the image) and scores instead of the raw output layers: only NMS "
                   "is left (pydarknet.onnx.postprocess). Letterboxing networks then also take image_size.")
@click.option("--fp16", is_flag=True, help="float16 weights and arithmetic after the first layer (float32 input, first layer and outputs).")
@click.option("--data", default=None, help="A .data file whose names= go into the model's metadata.")
@darknet_option
@common
def export_onnx(cfg, weights, out, opset, batch, decode, fp16, data, darknet, quiet, debug):
    """Export CFG + WEIGHTS as one ONNX graph in OUT (needs the onnx package: pip install pydarknet[onnx])."""
    try:
        from .onnx import export as export_graph
    except ImportError as e:
        raise DarknetError(f"export onnx needs the onnx package (pip install 'pydarknet[onnx]'): {e}")
    net = load_network(cfg, weights, darknet, table=False)
    names = load_names(data, 0, cfg)[0] if data else None
    model = export_graph(net, out, opset=opset, batch=batch, decode=decode, fp16=fp16, names=names)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        note(f"{value.name}: {' x '.join(map(str, dims))}")
    note(f"saved {out}")


# Commands that run no kernel: no compile listener for them.
KERNEL_FREE_COMMANDS = {"download", "version", "summary", "print", "ops", "partial"}


def announce_first_compile(argv):
    """Say on stderr when Numba compiles pydarknet's kernels (a first run on this CPU): the command is slow once.
    The timed figures leave the compile out (predict.timed_forward)."""
    if argv[0] not in KERNEL_FREE_COMMANDS:
        from .warmup import announce_compiling
        announce_compiling()


def skip_numba_probes():
    """Answer Numba's probes for BLAS and cffi without importing scipy and cffi.

    When the first cached kernel loads, Numba checks whether its compiled code may call BLAS by importing
    scipy.linalg, if installed: 0.4 s of every command's start. pydarknet's kernels never call BLAS from
    compiled code (matrix products go through numpy or kernels/gemm.py), so the command tells Numba there
    is none; a kernel that did call np.dot would fail to compile, loudly. Numba's typing also makes a
    cffi.FFI(), if cffi is installed, which parses C declarations (13 ms): pydarknet's kernels take no cffi
    function, so Numba's cffi support is set up as if cffi were absent (the process may import cffi later).
    And Numba proves its cache folder writable by creating a temporary file in it for every cached kernel, as
    the kernel modules are imported (a command imports about 170): once per folder is enough.
    """
    import numba.np.linalg
    from numba.core.caching import _CacheLocator

    check = _CacheLocator.ensure_cache_path
    if not getattr(check, "once_per_folder", False):
        writable = set()

        def ensure_cache_path(locator):
            path = locator.get_cache_path()
            if path not in writable:
                check(locator)
                writable.add(path)

        ensure_cache_path.once_per_folder = True
        _CacheLocator.ensure_cache_path = ensure_cache_path

    def no_blas():
        raise ImportError("pydarknet's kernels do not use BLAS from compiled code")

    numba.np.linalg.ensure_blas = no_blas
    if "cffi" not in sys.modules:
        sys.modules["cffi"] = None   # an import of cffi raises ImportError while this is set
        try:
            import numba.core.typing.cffi_utils  # noqa: F401
        finally:
            del sys.modules["cffi"]


def main(argv=None):
    """The command line: argv, or the process's own arguments (then the process ends with the command)."""
    if argv is not None:
        return run_command(list(argv))
    # A command's start creates Numba's hundred thousand long-lived objects: with Python's default threshold
    # (700) the collector walks them all twice on the way (85 ms); every 50000 new objects it runs 3 times.
    gc.set_threshold(50_000)
    try:
        run_command(sys.argv[1:])
    finally:
        # The process ends here: skip the garbage collection of Python's shutdown, which walks Numba's and
        # LLVM's objects for 0.25 s after a command that ran kernels (the operating system frees the memory).
        gc.freeze()


def run_command(argv):
    debug = "--debug" in argv
    if argv[:1] == ["--version"]:
        argv = ["version"]
    if argv and not {"-h", "--help"} & set(argv):
        skip_numba_probes()
    try:
        if argv and not {"-h", "--help"} & set(argv):
            chatter.update(quiet="-q" in argv or "--quiet" in argv)   # before click reads -q: for the notice
            announce_first_compile(argv)
        cli.main(args=argv, prog_name="pydarknet", standalone_mode=False)
    except click.exceptions.Abort:
        print("pydarknet: aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (DarknetError, OSError) as e:
        if debug:
            raise
        print(f"pydarknet: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("pydarknet: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(1 if Failures.count else 0)
