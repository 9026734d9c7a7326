"""detect, detector test, demo, detector demo."""
import click

from ..programs.detector import run_demo, run_detect
from ..programs.images import default_data
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
                darknet, quiet, debug):
        run_detect(files.names or default_data("coco.data"), files.cfg, files.weights, files.rest, thresh, hier, nms,
                   ext_output, out, save_labels, letterbox_of(letter_box, resize), as_json, decoder, darknet, batch,
                   dask, unordered, tiles=tiles_of(tiles, tile_overlap, tile_whole), crop=crop, heatmaps=heatmaps,
                   skip_classes=skip_classes)
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
                host, track, count_line, count_band, darknet, quiet, debug):
        source = files.rest[0] if files.rest else None
        if source is not None and camera is not None:
            raise click.UsageError("give a SOURCE or -c CAMERA, not both")
        run_demo(files.names or default_data("coco.data"), files.cfg, files.weights, source, camera, thresh, hier,
                 nms, letterbox_of(letter_box, resize), ext_output, out_filename, prefix, frame_skip, time_limit, batch,
                 as_json, darknet, progress_bar, track=track, count_line=count_line, count_band=count_band,
                 mjpeg_port=mjpeg_port, json_port=json_port, mjpeg_quality=mjpeg_quality, post_url=post_url,
                 host=host, skip_classes=skip_classes)
    return command


detector_demo = demo_command("demo", ("names", "cfg", "weights"),
                             "Detect objects in a video file, image sequence (frame_%04d.png), stream URL or camera "
                             "(-c N [0]).")
demo = demo_command("demo", ("cfg", "weights"), "`detector demo` with the COCO names of cfg/coco.data.")
