"""detect, detector test, demo, detector demo."""
import click

from ..programs.detector import run_demo, run_detect
from ..programs.images import default_data
from ..tasks.options import ImageOutputs, Live, Preprocessing, Thresholds, Tracking, VideoOutputs
from .options import (CONTEXT, STDIN_IMAGES, common, darknet_option, demo_options, detect_options, image_options,
                      letterbox_of, network_files, tiles_of)
from .progress import progress_bar


def detect_command(name, slots, doc):
    """`detect` (CFG WEIGHTS, COCO's names) or `detector test` (DATA CFG WEIGHTS): the files in darknet's order or
    told apart by extension (a .names file for the DATA), then the images."""
    @click.command(name, context_settings=CONTEXT, help=f"{doc} {STDIN_IMAGES}")
    @network_files(*slots)
    @detect_options
    @image_options
    @darknet_option
    @common
    def command(files, thresh, hier, nms, resize, letter_box, ext_output, out, dont_show, save_labels, batch,
                skip_classes, tiles, tile_overlap, tile_whole, crop, heatmaps, dask, unordered, as_json, decoder,
                darknet, network_options, quiet, debug):
        thresholds = Thresholds(thresh, hier, nms)
        preprocessing = Preprocessing(letterbox_of(letter_box, resize), decoder,
                                      tiles=tiles_of(tiles, tile_overlap, tile_whole))
        outputs = ImageOutputs(as_json, ext_output, skip_classes, out, save_labels, crop, heatmaps)
        run_detect(files.names or default_data("coco.data"), files.cfg, files.weights, files.rest, thresholds,
                   preprocessing, outputs, darknet, batch, dask, unordered, network_options)
    return command


detect = detect_command("detect", ("cfg", "weights"),
                        "Detect objects (COCO names from cfg/coco.data, or a .names/.data file given in any place), "
                        "like `darknet detect`.")
detector_test = detect_command("test", ("names", "cfg", "weights"),
                               "Detect objects with the names of a .data (or .names) file.")


def demo_command(name, slots, doc):
    """`demo` (CFG WEIGHTS, COCO's names) or `detector demo` (DATA CFG WEIGHTS), files as detect_command's, then
    the SOURCE."""
    @click.command(name, context_settings=CONTEXT, help=doc)
    @network_files(*slots, rest="SOURCE", most=1)
    @demo_options
    @darknet_option
    @common
    def command(files, thresh, hier, nms, resize, letter_box, ext_output, dont_show, batch, skip_classes, as_json,
                camera, out_filename, prefix, frame_skip, time_limit, mjpeg_port, json_port, mjpeg_quality, post_url,
                host, track, count_line, count_band, darknet, network_options, quiet, debug):
        source = files.rest[0] if files.rest else None
        if source is not None and camera is not None:
            raise click.UsageError("give a SOURCE or -c CAMERA, not both")
        thresholds = Thresholds(thresh, hier, nms)
        outputs = VideoOutputs(as_json, ext_output, skip_classes, out_filename, prefix, frame_skip, time_limit)
        run_demo(files.names or default_data("coco.data"), files.cfg, files.weights, source, camera, thresholds,
                 Preprocessing(letterbox_of(letter_box, resize)), outputs,
                 Tracking(track, count_line, count_band),
                 Live(mjpeg_port, json_port, mjpeg_quality, post_url, host), darknet, batch, network_options,
                 progress_bar)
    return command


detector_demo = demo_command("demo", ("names", "cfg", "weights"),
                             "Detect objects in a video file, image sequence (frame_%04d.png), stream URL or camera "
                             "(-c N [0]).")
demo = demo_command("demo", ("cfg", "weights"), "`detector demo` with the COCO names of cfg/coco.data.")
