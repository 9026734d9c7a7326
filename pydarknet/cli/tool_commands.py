"""The commands around the networks: summary, partial, anchors, download, version, compile."""
import click

from ..files.config import DarknetError, note
from ..programs.images import report_error
from ..results.output import print_lines
from .options import CONTEXT, cfg_options, darknet_option, quiet_debug
from .progress import progress_bar


@click.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights", required=False)
@darknet_option
@cfg_options
def summary(cfg, weights, darknet, strict, quiet, debug):
    """Print darknet's layer table with BFLOPs and parameter counts (aliases: print, ops)."""
    from ..network.network import Network
    net = Network(cfg, darknet=darknet, strict=strict)
    if weights:
        net.load(weights)
    print_lines(net.summary(totals=True))


@click.command(context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("out")
@click.argument("layers", type=int)
@cfg_options
def partial(cfg, weights, out, layers, strict, quiet, debug):
    """Keep the first LAYERS layers' weights (a pretrained backbone such as darknet53.conv.74), seen reset to 0."""
    from ..network.network import Network
    net = Network(cfg, strict=strict).load(weights, upto=layers)
    net.seen = 0
    net.save(out, upto=layers)
    note(f"Saving weights to {out}")


@click.command(context_settings=CONTEXT)
@click.argument("data")
@click.option("-num_of_clusters", "clusters", type=click.IntRange(min=1), required=True, help="How many anchors.")
@click.option("-width", "width", type=click.IntRange(min=1), required=True, help="Network width.")
@click.option("-height", "height", type=click.IntRange(min=1), required=True, help="Network height.")
@click.option("-seed", "seed", type=int, default=0, show_default=True, help="Seed of the k-means++ starts.")
@click.option("-show", "show", is_flag=True, help="Draw anchors.png (boxes and centroids).")
@click.option("--cfg", "cfg", default=None, help="Also write <cfg>-anchors.cfg with these anchors, masks "
              "and filters, and print the diff.")
@quiet_debug
def anchors(data, clusters, width, height, seed, show, cfg, quiet, debug):
    """Anchors for a dataset: IoU k-means over the train= labels, writes anchors.txt
    (also AlexeyAB's spelling `detector calc_anchors`)."""
    from ..tasks.anchors import run_anchors
    print_lines(run_anchors(data, clusters, width, height, seed=seed, show=show, cfg=cfg,
                            progress=progress_bar("labels")))


@click.command("download", context_settings=CONTEXT)
@click.argument("names", nargs=-1)
@click.option("--mirror", metavar="BASE_URL", default=None,
              help="Fetch BASE_URL/<file name> instead of the official address (an offline mirror).")
@quiet_debug
def download(names, mirror, quiet, debug):
    """Fetch official weights (tiny, yolov3-tiny, ...) into the user cache, SHA-256 checked; a cut download
    resumes. Without NAME: list them. A WEIGHTS argument naming a downloaded file (`tiny.weights`) finds it."""
    from ..files.download import download as fetch, listing, megabytes, model_named
    if not names:
        print_lines(listing())
        return
    for name in names:
        try:
            model = model_named(name)
            path, fetched = fetch(model, mirror, progress_bar(
                model.file_name, describe=lambda done, total: f"{megabytes(done)} of {megabytes(total)}"))
        except DarknetError as e:
            report_error(e)
            continue
        note(f"{model.name}: {'downloaded' if fetched else 'already downloaded'}; use it as {model.file_name} "
             f"with {model.cfg}")
        print(path)


@click.command(context_settings=CONTEXT)
def version():
    """pydarknet's version, its libraries' and the CPU Numba compiles for (also `pydarknet --version`)."""
    from ..tasks.about import version_lines
    print_lines(version_lines())


@click.command("compile", context_settings=CONTEXT)
@click.option("--no-training", "no_training", is_flag=True, help="Only what detection and classification use.")
@quiet_debug
def compile_kernels(no_training, quiet, debug):
    """Compile every kernel for this CPU into Numba's cache now (once per CPU and version; for container
    images and shared installs), instead of during the first command that needs it."""
    from ..tasks.warmup import cache_folder, compile_kernels as compile_all
    compile_all(training=not no_training, progress=progress_bar("compiling"))
    note(f"kernels compiled and cached in {cache_folder()}")
