"""datasets: data sets to train on, made on this machine (`datasets shapes DIR`)."""
import click

from ..files.config import note
from .options import CONTEXT, quiet_debug


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
