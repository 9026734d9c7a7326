"""classify, classifier predict."""
import click

from ..programs.classifier import run_classify
from ..programs.images import default_data
from .options import CONTEXT, classify_options, common, darknet_option, image_options, preprocess_of


@click.command(context_settings=CONTEXT)
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


@click.command("predict", context_settings=CONTEXT)
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
