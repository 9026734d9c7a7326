"""detector map, detector valid, detector recall, classifier valid."""
import click

from ..files.config import check_fractions, note
from ..programs.images import over_valid_list
from ..results.output import json_line, print_lines
from .options import CONTEXT, common, darknet_option, dask_option, network_files
from .progress import progress_bar


def evaluation_command(name, *arguments):
    """A command over a data file's valid= list: DATA CFG WEIGHTS (or `arguments`), a Dask cluster, a darknet to
    follow."""
    def wrap(fn):
        for decorate in (common, darknet_option, dask_option) + (arguments or (
                click.argument("weights"), click.argument("cfg"), click.argument("data"))):
            fn = decorate(fn)
        return click.command(name, context_settings=CONTEXT)(fn)
    return wrap


@evaluation_command("map", network_files("names", "cfg", "weights", rest="LIST", most=1))
@click.option("-points", "points", type=click.Choice(["0", "11", "101"]), default="0", show_default=True,
              help="0: area under the curve; 11: VOC2007; 101: COCO.")
@click.option("-thresh", "thresh", type=float, default=0.25, show_default=True, help="For TP/FP/precision/recall.")
@click.option("-iou_thresh", "iou_thresh", type=float, default=0.5, show_default=True, help="IoU of a match.")
@click.option("-letter_box", "-letterbox", "letter_box", is_flag=True, help="Letterbox the images (else as the cfg).")
@click.option("--json", "as_json", is_flag=True,
              help="stdout is one JSON document, the summary; the report goes to stderr (as chatter: not under -q).")
@click.option("--coco", is_flag=True, help="COCO's twelve figures too (AP@[.50:.95], AP50, AP75, by area, the ARs), "
              "by pycocotools on the same detections (the coco extra).")
def detector_map(files, points, thresh, iou_thresh, letter_box, as_json, coco, dask, darknet, network_options, quiet,
                 debug):
    """mAP over valid= (or LIST, a file of image paths) as AlexeyAB's `detector map` prints it; DATA may be a
    .names file when LIST is given."""
    from ..tasks.evaluate import run_map
    check_fractions(thresh=thresh, iou_thresh=iou_thresh)
    lines, summary = over_valid_list(run_map, files.names, files.cfg, files.weights, dask, darknet, network_options,
                                     thresh=thresh, iou_thresh=iou_thresh, points=int(points), letter_box=letter_box,
                                     progress=progress_bar("map"), image_list=files.rest[0] if files.rest else None,
                                     coco=coco)
    if as_json:   # a pipeline reads the JSON; the report stays in view at a terminal
        note("\n".join(lines))
        print(json_line(summary))
    else:
        print_lines(lines)


@evaluation_command("valid")
@click.option("-out", "out", default=None, help="Results folder [the data file's results=, else results].")
def detector_valid(data, cfg, weights, out, dask, darknet, network_options, quiet, debug):
    """Write VOC (comp4_det_test_<class>.txt) or COCO (eval=coco) result files for valid=."""
    from ..tasks.evaluate import run_valid
    files, _ = over_valid_list(run_valid, data, cfg, weights, dask, darknet, network_options, out_dir=out,
                               progress=progress_bar("valid"))
    for path in files:
        note(f"wrote {path}")


@evaluation_command("recall")
def detector_recall(data, cfg, weights, dask, darknet, network_options, quiet, debug):
    """pjreddie's running recall and IoU over valid=."""
    from ..tasks.evaluate import run_recall
    over_valid_list(run_recall, data, cfg, weights, dask, darknet, network_options,
                    on_line=lambda line: print(line, flush=True), progress=progress_bar("recall", lines_on_stdout=True))


@evaluation_command("valid")
@click.option("--strict-labels", is_flag=True, help="Every path must contain exactly one label.")
def classifier_valid(data, cfg, weights, strict_labels, dask, darknet, network_options, quiet, debug):
    """Top-1 and top-k accuracy over valid=, labels from the image paths."""
    from ..tasks.evaluate import run_classifier_valid
    over_valid_list(run_classifier_valid, data, cfg, weights, dask, darknet, network_options,
                    strict_labels=strict_labels, progress=progress_bar("valid", lines_on_stdout=True),
                    on_line=lambda line: print(line, flush=True))
