"""datasets: data sets to train on: made on this machine (`datasets shapes DIR`), converted from a labelling
tool's export (`datasets convert`), checked (`datasets check`) and shown (`datasets show`)."""
import click

from ..files.config import note
from ..results.output import print_lines
from .options import CONTEXT, quiet_debug
from .progress import progress_bar


@click.command(context_settings=CONTEXT)
@click.argument("folder")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the generator: the same seed, the same files.")
@click.option("--train", "train", type=click.IntRange(min=1), default=600, show_default=True, help="Training images.")
@click.option("--valid", "valid", type=click.IntRange(min=1), default=150, show_default=True, help="Validation images.")
@quiet_debug
def shapes(folder, seed, train, valid, quiet, debug):
    """The synthetic shapes set (circles, squares, triangles) in FOLDER: images with YOLO labels, train.txt,
    valid.txt, shapes.names and FOLDER/shapes.data (absolute paths: it works from any directory)."""
    from ..files.datasets import write_shapes
    data = write_shapes(folder, train=train, valid=valid, seed=seed)
    note(f"{train} training and {valid} validation images in {data.parent}")
    print(data)


@click.command(context_settings=CONTEXT)
@click.argument("kind", metavar="voc|coco|yolo", type=click.Choice(["voc", "coco", "yolo"]))
@click.argument("src")
@click.argument("out")
@click.option("--valid", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="The share of the images drawn for valid.txt, where the source has no split of its own.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of that draw.")
@click.option("--images", default=None, help="coco: the folder of the JSON's images (its file_name's are in it).")
@click.option("--names", default=None,
              help="voc: the classes, one a line, in order [every <name> found, sorted]; others are left out.")
@click.option("--difficult/--no-difficult", default=False, show_default=True,
              help="voc: keep the objects marked difficult (voc_label.py leaves them out).")
@click.option("--copy", is_flag=True, help="Copy the images into OUT [link them].")
@click.option("--name", default=None, help="The stem of OUT's .data, .names (and .categories) [OUT's name].")
@quiet_debug
def convert(kind, src, out, valid, seed, images, names, difficult, copy, name, quiet, debug):
    """A labelling tool's export (Pascal VOC folder, COCO instances JSON, Ultralytics YOLO folder) SRC as a set in
    darknet's layout in OUT, ready for `detector train`: images/ with a label file beside each, NAME.names,
    train.txt, valid.txt and NAME.data (printed). A problem (an unknown class, a box past the image, clipped, a
    missing image) is a line, the image or box left out; it fails only when no image is left."""
    from ..tasks.datasets.convert import convert as run
    data, problems, summary = run(kind, src, out, valid=valid, seed=seed, images=images, names=names,
                                  keep_difficult=difficult, copy=copy, name=name)
    note("\n".join(problems + summary))
    print(data)


@click.command(context_settings=CONTEXT)
@click.argument("data")
@click.option("--no-decode", "no_decode", is_flag=True, help="Only ask that each image file be there.")
@quiet_debug
def check(data, no_decode, quiet, debug):
    """Every image of DATA's train= and valid= lists decodes and every label line is `class x y w h` with the class
    in [0, classes), x and y in [0, 1], w and h in (0, 1]: one line a fault (file:line: problem), a summary, exit
    status 1 on faults."""
    from ..tasks.datasets.check import check_set
    check_set(data, lambda line: print(line, flush=True), decode=not no_decode,
              progress=progress_bar("check", lines_on_stdout=True))


@click.command(context_settings=CONTEXT)
@click.argument("data")
@click.option("-out", "--out", "out", default="labels.jpg", show_default=True, help="The picture (.jpg or .png).")
@click.option("--count", type=click.IntRange(min=1), default=16, show_default=True, help="Images in the grid.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the images' draw.")
@quiet_debug
def show(data, out, count, seed, quiet, debug):
    """A picture of DATA's labels (-out): random images of train= with their boxes and names drawn, and a panel of
    every box's width and height; the images, boxes and boxes per class on stdout."""
    from ..tasks.datasets.show import show_set
    print_lines(show_set(data, out=out, count=count, seed=seed))
