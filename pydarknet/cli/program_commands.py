"""rnn generate / train / valid (the `rnn` group is in the tree's assembly), nightmare: darknet's char-RNN and
deep-dream programs."""
import click

from .options import CONTEXT, common


def char_options(fn):
    fn = click.option("-tokens", "tokens", default=None, help="Print symbols from this file (one per line) instead "
                      "of bytes.")(fn)
    fn = click.option("-seed", "seed", default="\n\n", show_default=False,
                      help="Text fed to the network first (printed as is) [two newlines].")(fn)
    return fn


@click.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@char_options
@click.option("-len", "length", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Characters to sample.")
@click.option("-temp", "temperature", type=float, default=0.7, show_default=True, help="Softmax temperature.")
@click.option("-srand", "srand", type=int, default=None, help="C's srand() seed [the time, as darknet].")
@common
def generate(cfg, weights, seed, tokens, length, temperature, srand, network_options, quiet, debug):
    """Print SEED then LEN characters sampled from a char model (darknet's text for the same -srand)."""
    from ..programs.rnn import generate as run
    run(cfg, weights, length, seed, temperature, srand, tokens, network_options=network_options)


@click.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.option("-seed", "seed", default="\n\n", help="Text fed to the network first [two newlines].")
@common
def valid(cfg, weights, seed, network_options, quiet, debug):
    """Bits per character of the text on stdin, character by character."""
    from ..programs.rnn import valid as run
    run(cfg, weights, seed, network_options=network_options)


@click.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights", required=False)
@click.option("-file", "text_file", default="data/shakespeare.txt", show_default=True, help="The text to learn.")
@click.option("-clear", "clear", is_flag=True, help="Start counting from 0 (reset `seen`).")
@click.option("-tokenized", "tokenized", is_flag=True, help="The file holds whitespace-separated symbol numbers.")
@click.option("-srand", "srand", type=int, default=None, help="C's srand() seed [the time, as darknet].")
@click.option("--backup", default="backup", show_default=True, help="Folder for the weights.")
@click.option("--max-batches", "max_batches", type=int, default=None, help="Stop after this many iterations "
              "[the cfg's max_batches].")
@common
def train(cfg, weights, text_file, clear, tokenized, srand, backup, max_batches, network_options, quiet, debug):
    """Train a char model on a text: batch/time_steps streams from random offsets, darknet's progress line per
    iteration, <cfg>.backup every 100 iterations, <cfg>_final.weights at the end."""
    from ..programs.rnn import train as run
    run(cfg, weights, text_file, clear, tokenized, backup, srand, max_batches, network_options=network_options)


@click.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("image")
@click.argument("layer", type=int)
@click.option("-rounds", "rounds", type=click.IntRange(min=0), default=1, show_default=True,
              help="Rounds; the image is saved after each.")
@click.option("-iters", "iters", type=click.IntRange(min=0), default=10, show_default=True,
              help="Steps per round.")
@click.option("-octaves", "octaves", type=click.IntRange(min=1), default=4, show_default=True,
              help="Scales to pick from: 1/1.33333333^k.")
@click.option("-range", "layers_range", type=click.IntRange(min=1), default=1, show_default=True,
              help="Layers to pick from around LAYER.")
@click.option("-rate", "rate", type=float, default=0.04, show_default=True, help="Step size.")
@click.option("-thresh", "thresh", type=float, default=1.0, show_default=True,
              help="Push the outputs above mean + thresh * std.")
@click.option("-norm", "norm", type=int, default=1, show_default=True, help="Normalise each step (0: no).")
@click.option("-zoom", "zoom", type=float, default=1.0, show_default=True, help="Zoom between rounds.")
@click.option("-rotate", "rotate", type=float, default=0.0, show_default=True,
              help="Rotation between rounds (radians).")
@click.option("-prefix", "prefix", default=None, help="Folder for the images.")
@common
def nightmare(cfg, weights, image, layer, rounds, iters, octaves, layers_range, rate, thresh, norm, zoom, rotate,
              prefix, network_options, quiet, debug):
    """Deep-dream IMAGE on LAYER's strongest activations; writes <image>_<cfg>_<LAYER>_<round>.jpg."""
    from ..programs.nightmare import nightmare as run
    run(cfg, weights, image, layer, rounds, iters, octaves, zoom, rate, thresh, rotate, layers_range, norm, prefix,
        network_options=network_options)
