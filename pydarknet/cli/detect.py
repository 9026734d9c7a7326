"""detect, detector test, demo, detector demo."""
import click

from ..programs.detector import run_demo, run_detect
from ..programs.images import default_data
from .options import CONTEXT, common, darknet_option, demo_options, detect_options, image_options, letterbox_of
from .progress import progress_bar


@click.command(context_settings=CONTEXT)
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


@click.command("test", context_settings=CONTEXT)
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


def one_source(source, camera):
    if source is not None and camera is not None:
        raise click.UsageError("give a SOURCE or -c CAMERA, not both")


@click.command("demo", context_settings=CONTEXT)
@click.argument("data")
@click.argument("cfg")
@click.argument("weights")
@click.argument("source", required=False)
@demo_options
@darknet_option
@common
def detector_demo(data, cfg, weights, source, thresh, hier, nms, resize, letter_box, ext_output, dont_show, batch,
                  as_json, camera, out_filename, prefix, frame_skip, time_limit, mjpeg_port, json_port, mjpeg_quality,
                  post_url, host, track, count_line, darknet, quiet, debug):
    """Detect objects in a video file, image sequence (frame_%04d.png), stream URL or camera (-c N [0])."""
    one_source(source, camera)
    run_demo(data, cfg, weights, source, camera, thresh, hier, nms, letterbox_of(letter_box, resize), ext_output,
             out_filename, prefix, frame_skip, time_limit, batch, as_json, darknet, progress_bar, track=track,
             count_line=count_line, mjpeg_port=mjpeg_port, json_port=json_port, mjpeg_quality=mjpeg_quality,
             post_url=post_url, host=host)


@click.command("demo", context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("source", required=False)
@demo_options
@darknet_option
@common
def demo(cfg, weights, source, thresh, hier, nms, resize, letter_box, ext_output, dont_show, batch, as_json, camera,
         out_filename, prefix, frame_skip, time_limit, mjpeg_port, json_port, mjpeg_quality, post_url, host, track,
         count_line, darknet, quiet, debug):
    """`detector demo` with the COCO names of cfg/coco.data."""
    one_source(source, camera)
    run_demo(default_data("coco.data"), cfg, weights, source, camera, thresh, hier, nms,
             letterbox_of(letter_box, resize), ext_output, out_filename, prefix, frame_skip, time_limit, batch,
             as_json, darknet, progress_bar, track=track, count_line=count_line, mjpeg_port=mjpeg_port,
             json_port=json_port, mjpeg_quality=mjpeg_quality, post_url=post_url, host=host)
