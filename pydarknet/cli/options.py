"""The option stacks the commands share, so that one flag means one thing on every command that takes it."""
import functools

import click

from ..files.config import set_quiet
from ..network.cuda import devices
from ..programs.file_arguments import METAVARS, ArgumentsError, sort_files
from ..tasks.options import DECODERS, ENGINES, Live, NetworkOptions, Preprocessing, Thresholds, VideoOutputs

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

# The end of the help of the commands that take images (programs.images.command_images reads stdin so).
STDIN_IMAGES = ("With no IMAGE, stdin gives them: image paths, one per line, as darknet reads them, or the bytes of "
                "one JPEG or PNG image (`cat dog.jpg |`), told by its first bytes and named stdin in the results.")


def use_fast_products(ctx, param, fast):
    if fast:
        from ..tasks.predict import use_fast
        use_fast(fast)


def use_reduced_products(ctx, param, chosen):
    """--bf16 and --int16: the fast products with the convolutions in that precision."""
    if chosen:
        from ..tasks.predict import use_fast
        use_fast(param.name)


def quiet_debug(fn):
    """-q and --debug: every command."""
    fn = click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, help="No chatter on stderr (errors still show).",
                      callback=lambda ctx, param, value: set_quiet(value))(fn)
    return fn


def cfg_options(fn):
    """--strict (the command's `strict`, passed to the Network it builds), -q and --debug: every command that loads
    a network's cfg."""
    fn = click.option("--strict", is_flag=True,
                      help="A cfg option that no layer reads (a misspelt key) is an error (exit 2) instead of a "
                           "warning.")(fn)
    return quiet_debug(fn)


def network_options(fn):
    """The command `fn` given its -gpus/-i/--gpu and --strict as one `network_options` argument (a NetworkOptions)
    to hand down to the network it builds; the GPUs are checked first, before any file is read."""
    @functools.wraps(fn)
    def command(*args, gpus, gpu, strict, engine, **kwargs):
        chosen = devices(gpus if gpus is not None else "0" if gpu else None)
        return fn(*args, network_options=NetworkOptions(tuple(chosen), strict, engine), **kwargs)
    return command


def common(fn):
    """--strict, -q, --debug, --fast, --bf16, --int16, --engine and the GPU (-gpus/-i/--gpu): every command that runs
    a network; it takes `network_options` (see network_options) in place of the GPU, --engine and --strict."""
    fn = network_options(fn)
    fn = click.option("--engine", type=click.Choice(ENGINES), default=NetworkOptions.engine, show_default=True,
                      help="What runs the network: pydarknet's kernels (the only engine that trains), or its ONNX "
                           "graph in ONNX Runtime or OpenVINO (their extras; --fast, --bf16 set OpenVINO's "
                           "precision).")(fn)
    fn = click.option("--gpu", "gpu", is_flag=True, help="Run on the first CUDA GPU (the same as -gpus 0).")(fn)
    fn = click.option("-gpus", "-i", "gpus", metavar="N", default=None,
                      help="Run on CUDA GPU N, as darknet's -gpus/-i (needs the cuda extra) [the CPU]; train: one "
                           "replica a device, e.g. 0,1 or cpu,cpu.")(fn)
    fn = click.option("--fast", is_flag=True, expose_value=False, callback=use_fast_products,
                      help="Faster: not darknet's bit-exact numbers but within 1e-3 of them, the same detections.")(fn)
    fn = click.option("--bf16", is_flag=True, expose_value=False, callback=use_reduced_products,
                      help="--fast with the convolutions in bfloat16, on a CPU that multiplies it natively (Intel's "
                           "AMX, AMD Zen 4 and later): the fastest mode there, the same detections (probabilities "
                           "within .02). Elsewhere it runs as --fast, and a warning says why.")(fn)
    fn = click.option("--int16", is_flag=True, expose_value=False, callback=use_reduced_products,
                      help="--fast with the convolutions in 12-bit integers, on a CPU with VNNI: faster there, the "
                           "same detections (within .02); elsewhere it runs as --fast, and a warning says why.")(fn)
    return cfg_options(fn)


def image_options(fn):
    fn = click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line on stdout.")(fn)
    fn = click.option("--decoder", type=click.Choice(DECODERS), default=Preprocessing.decoder, show_default=True,
                      help="JPEG decoder: darknet's exact pixels, or OpenCV's (faster, not darknet-exact).")(fn)
    return fn


def darknet_option(fn):
    return click.option("--darknet", type=click.Choice(["ab", "pjreddie"]), default=None,
                        help="Follow this darknet's arithmetic and defaults: the AlexeyAB fork's or pjreddie's "
                             "[chosen from the cfg's options and the weights' revision].")(fn)


def dask_option(fn):
    return click.option("--dask", "dask", metavar="ADDRESS", default=None,
                        help="Run on a Dask cluster: a scheduler's address (tcp://host:8786), or local:N for N worker "
                             "processes on this machine (the dask extra).")(fn)


def cluster_options(fn):
    """--dask and --unordered: the commands that print a result per image."""
    fn = click.option("--unordered", is_flag=True,
                      help="With --dask: print each image's result as soon as it is ready, not in input order.")(fn)
    return dask_option(fn)


def batch_option(fn):
    return click.option("-batch", "batch", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Images per forward pass (the results are the same at any batch size).")(fn)


def detection_options(fn):
    """The options of every command that detects: `detect`, `detector test` and the demos."""
    fn = click.option("-skipclasses", "skip_classes", metavar="LIST", default=None,
                      help="Never report, draw, track or count these classes: numbers and ranges, as the Hank.ai "
                           "fork (2,5-8).")(fn)
    fn = batch_option(fn)
    fn = click.option("-dont_show", "dont_show", is_flag=True, help="Accepted, as AlexeyAB's (no window).")(fn)
    fn = click.option("-ext_output", "ext_output", is_flag=True, help="Print each box in pixels, as AlexeyAB.")(fn)
    fn = click.option("-letter_box", "-letterbox", "letter_box", is_flag=True,
                      help="Letterbox the input [pjreddie's networks; AlexeyAB's when the cfg says letter_box=1].")(fn)
    fn = click.option("-resize", "resize", is_flag=True, help="Plain resize to the network size [AlexeyAB's].")(fn)
    fn = click.option("-nms", "nms", type=float, default=Thresholds.nms, show_default=True,
                      help="NMS IoU threshold.")(fn)
    fn = click.option("-hier", "hier", type=float, default=Thresholds.hier_thresh, show_default=True,
                      help="Hierarchical threshold.")(fn)
    fn = click.option("-thresh", "thresh", type=float, default=None,
                      help="Detection threshold [.25 for AlexeyAB's networks, .5 for pjreddie's].")(fn)
    return fn


def network_files(*slots, rest="IMAGE", most=None):
    """The positional arguments of a command that loads a detector, as a programs.files.NetworkFiles: darknet's
    order (`slots`, e.g. "names", "cfg", "weights"), or any order told apart by extension; then `rest` (at most
    `most`)."""
    def sort(ctx, param, value):
        try:
            return sort_files(value, slots, most)
        except ArgumentsError as e:
            raise click.UsageError(str(e), ctx) from None
    tail = f"[{rest}]..." if most is None else f"[{rest}]"
    return click.argument("files", nargs=-1, callback=sort, metavar=" ".join(METAVARS[s] for s in slots) + " " + tail)


def detect_options(fn):
    fn = cluster_options(fn)
    fn = click.option("-heatmaps", "heatmaps", is_flag=True,
                      help="Write each class's heatmap (the [yolo]/[region] layers' probabilities over the image) "
                           "beside the drawing: NAME_heatmap_CLASS.jpg, NAME_heatmap.jpg for all classes.")(fn)
    fn = click.option("-crop", "crop", metavar="DIR", default=None,
                      help="Write each detection as an image DIR/<image>_<n>_<class>.jpg (named in --json).")(fn)
    fn = click.option("-tile_whole", "tile_whole", is_flag=True,
                      help="With -tiles: detect the whole image too, for objects larger than a tile.")(fn)
    fn = click.option("-tile_overlap", "tile_overlap", type=click.FloatRange(0, 0.75), default=None,
                      help="With -tiles: the share of a tile's side its neighbours cover too, at least [.25].")(fn)
    fn = click.option("-tiles", "tiles", is_flag=True,
                      help="Cut an image larger than the network into network-sized tiles, detect each, and join "
                           "the boxes (those cut by a tile's edge into one).")(fn)
    fn = click.option("-save_labels", "save_labels", is_flag=True, help="Write YOLO labels beside each image.")(fn)
    fn = click.option("-out", "out", default=None,
                      help="Base name of the drawn image [predictions]; a name ending in .json: AlexeyAB's JSON "
                           "file of all the detections instead.")(fn)
    return detection_options(fn)


def demo_options(fn):
    fn = click.option("-time_limit_sec", "time_limit", type=click.FloatRange(min=0), default=VideoOutputs.time_limit,
                      help="Stop after this many seconds [no limit].")(fn)
    fn = click.option("-frame_skip", "-s", "frame_skip", type=click.IntRange(min=0), default=VideoOutputs.frame_skip,
                      show_default=True, help="Detect one frame, then skip N (written to -out_filename with the "
                      "boxes found last).")(fn)
    fn = click.option("-prefix", "prefix", default=None, help="Write each annotated frame as PREFIX_%08d.jpg "
                      "(numbered from the source's first frame, 1).")(fn)
    fn = click.option("-out_filename", "out_filename", default=None,
                      help="Write the annotated video (.mp4, .avi or .mkv) at the source's size and frame rate.")(fn)
    fn = click.option("-c", "camera", type=click.IntRange(min=0), default=None, help="Camera number (no SOURCE).")(fn)
    fn = click.option("--json", "as_json", is_flag=True,
                      help='One JSON object per frame per line on stdout: "frame" (from 1), "time" (seconds into '
                           'the video), then as detect\'s.')(fn)
    return detection_options(live_options(fn))


def count_line(ctx, param, value):
    """-count_line x1,y1,x2,y2 as four numbers."""
    if value is None:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in value.split(","))   # ValueError too for a count other than 4
    except ValueError:
        message = f"{value}: give the line's two ends in pixels as x1,y1,x2,y2 (e.g. 320,0,320,479)"
        raise click.BadParameter(message) from None
    return x1, y1, x2, y2


def live_options(fn):
    """The demos' live output (pydarknet/tasks/live) and tracking (pydarknet/results/track.py)."""
    fn = click.option("-count_band", "count_band", type=click.FloatRange(min=0), default=None, metavar="FRACTION",
                      help="-count_line's hysteresis: a track is on a side once its centre is this fraction of its "
                           "box's size past the line, so a box wobbling on the line counts once (default .25; 0: "
                           "every change of side).")(fn)
    fn = click.option("-count_line", "count_line", metavar="X1,Y1,X2,Y2", callback=count_line, default=None,
                      help="Count the tracks that cross this line (pixels), per class and direction: in the JSON, "
                           "the drawing and the page (implies -track).")(fn)
    fn = click.option("-track", "track", is_flag=True,
                      help="Give each object a track id that stays with it across frames and short misses: in the "
                           "text, the JSON, the drawing and the streams.")(fn)
    fn = click.option("--host", "host", default=Live.host, show_default=True,
                      help="Address the live ports listen on; 0.0.0.0 serves every network: no authentication, no "
                           "TLS (docs/video-and-live.md, Security).")(fn)
    fn = click.option("-http_post_host", "post_url", metavar="URL", default=None,
                      help="POST each frame's JSON (the fork's, as -json_port sends it) to this URL; a bounded queue "
                           "and a 3 s timeout, so a dead endpoint never stalls the video.")(fn)
    fn = click.option("-mjpeg_quality", "mjpeg_quality", type=click.IntRange(1, 100), default=Live.mjpeg_quality,
                      show_default=True, help="JPEG quality of the MJPEG stream.")(fn)
    fn = click.option("-json_port", "json_port", type=click.IntRange(1, 65535), default=None,
                      help="Stream each frame's detections on this port as the AlexeyAB fork does (/: its JSON "
                           "array) and as Server-Sent Events (/events).")(fn)
    fn = click.option("-mjpeg_port", "mjpeg_port", type=click.IntRange(1, 65535), default=None,
                      help="Stream the annotated frames on this port as MJPEG (/stream; / for players), with a page "
                           "to watch them in a browser (/).")(fn)
    return fn


def classify_options(fn):
    fn = cluster_options(fn)
    fn = batch_option(fn)
    fn = click.option("-resize", "resize", is_flag=True, help="Plain resize to the network size.")(fn)
    fn = click.option("-letter_box", "-letterbox", "letter_box", is_flag=True, help="Letterbox to the network.")(fn)
    fn = click.option("-top", "top", type=click.IntRange(min=0), default=0,
                      help="How many classes to print [data file's top=, or 5].")(fn)
    return fn


def tiles_of(tiles, overlap, whole):
    """-tiles, -tile_overlap, -tile_whole as Detector's tiles: None (no tiles) or a tiles.Tiles."""
    if not tiles and (overlap is not None or whole):
        raise click.UsageError("-tile_overlap and -tile_whole go with -tiles")
    if not tiles:
        return None
    from ..results.tiles import Tiles
    return Tiles(whole=whole) if overlap is None else Tiles(overlap, whole)


def letterbox_of(letter_box, resize):
    """-letter_box / -resize as options.Preprocessing's letterbox (None, neither: the network's darknet's way)."""
    if letter_box and resize:
        raise click.UsageError("-letter_box and -resize exclude each other")
    return True if letter_box else False if resize else None
