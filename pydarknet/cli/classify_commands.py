"""classify, classifier predict."""
import click

from ..programs.classifier import run_classify
from ..programs.images import default_data
from ..tasks.options import Preprocessing
from .options import (CONTEXT, STDIN_IMAGES, classify_options, common, darknet_option, image_options, letterbox_of,
                      network_files)


def classify_command(name, slots, doc):
    """`classify` (CFG WEIGHTS, ImageNet's names) or `classifier predict` (DATA CFG WEIGHTS): the files in darknet's
    order or told apart by extension, as detect's, then the images."""
    @click.command(name, context_settings=CONTEXT, help=f"{doc} {STDIN_IMAGES}")
    @network_files(*slots)
    @classify_options
    @image_options
    @darknet_option
    @common
    def command(files, top, letter_box, resize, batch, dask, unordered, as_json, decoder, darknet, network_options,
                quiet, debug):
        run_classify(files.names or default_data("imagenet1k.data"), files.cfg, files.weights, files.rest,
                     top or (5 if files.names is None else 0), Preprocessing(letterbox_of(letter_box, resize), decoder),
                     as_json, darknet, batch, dask, unordered, network_options)
    return command


classify = classify_command("classify", ("cfg", "weights"),
                            "Classify images (ImageNet names from cfg/imagenet1k.data, or a .names/.data file given "
                            "in any place), like `darknet classify`: top 5 (a .data file's top=).")
classifier_predict = classify_command("predict", ("names", "cfg", "weights"),
                                      "Classify images with the names (and top=) of a .data file.")
