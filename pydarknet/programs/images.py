"""Images through a network as the commands take them: named on the command line or one path per line of
stdin, `batch` at a time, in this process or on a Dask cluster; each result shown in input order, an image that
cannot be used reported as one line while the others go on."""
import itertools
import sys
from contextlib import contextmanager
from pathlib import Path

from .. import preload
from ..config import DarknetError, note
from ..config import default_data, load_names  # noqa: F401  (the commands import them from here)
from ..resources import local_copy
from ..stream import batch_results


class Failures:
    """Counts per-image errors so a batch goes on and the exit status still tells."""
    count = 0


def report_error(error):
    print(f"pydarknet: error: {error}", file=sys.stderr)
    Failures.count += 1


def image_paths(images):
    """The images named on the command line, else one path per line of stdin."""
    if images:
        yield from images
        return
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("Enter Image Path: ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        line = line.strip()
        if line:
            yield line


def piped_paths():
    """The image paths of a piped (or redirected) stdin, its first one read now, so that an empty stdin is one
    line before any network loads; None at a terminal (image_paths asks for paths as they are typed)."""
    if sys.stdin.isatty():
        return None
    paths = image_paths(None)
    first = next(paths, None)
    if first is None:
        raise DarknetError("no image: stdin is empty; give IMAGE paths as arguments, or pipe their paths in, one "
                           "per line")
    return itertools.chain([first], paths)


def load_network(cfg, weights, darknet=None, table=True, role=None):
    """Build and load a network, showing darknet's layer table on stderr as darknet does at load. A cfg or
    weights given as a URL is read through fsspec. `role`: "detector" or "classifier", checked before the
    weights are read (predict.check_role)."""
    from ..kernels.products import backend
    from ..network import Network
    from ..predict import check_role
    net = Network(local_copy(cfg), darknet=darknet)
    check_role(net, role)
    if table:
        note("\n".join(net.summary()))
    net.load(local_copy(weights))
    preload.load_recorded(f"{Path(cfg).name} {backend()}")   # before the first pass is timed
    net.prepare()
    if table:
        note(net.darknet_line())
    return net


def for_each_batch(images, prepare, run_batch, show, batch=1):
    """The images named (or read from stdin), `batch` at a time through the network: prepare(path) loads one
    and makes the network's input, in a background thread a batch ahead; run_batch(prepared list) gives their
    results; show(path, prepared, result) prints one. Results come in input order; an image that cannot be
    used is reported and the others go on. Paths typed at a terminal go one at a time, as they come."""
    interactive = not images and sys.stdin.isatty()
    batch = 1 if interactive else batch
    show_each(batch_results(image_paths(images), prepare, run_batch, batch, 0 if interactive else batch), show)


def on_cluster(address, predict, images, show, *args, **options):
    """The images named (or read from stdin) through pydarknet.distributed's `predict` (detect or classify) on
    the Dask cluster at `address`, each result shown as for_each_batch shows it (show(path, None, result)), in
    input order unless options say ordered=False."""
    from .. import distributed
    if not images and sys.stdin.isatty():
        options.update(chunk=1, window=1)   # paths typed at a terminal go one at a time, as they come
    with distributed.connect(address) as client:
        results = getattr(distributed, predict)(image_paths(images), *args, client=client, **options)
        show_each(((path, None, result) for path, result in results), show)


def over_valid_list(evaluation, data_file, cfg, weights, dask=None, darknet=None, **options):
    """evaluate.py's `evaluation` (run_map, run_valid, ...) over the data file's valid= list, the network loaded
    here (no layer table) and the per-image work done in this process or on the Dask cluster at `dask`."""
    net = load_network(cfg, weights, darknet, table=False)
    with evaluation_images(dask, cfg, weights, darknet) as images:
        return evaluation(data_file, cfg, weights, network=net, images=images, **options)


@contextmanager
def evaluation_images(address, cfg, weights, darknet):
    """evaluate.py's runner of the per-image work: None (this process), or the Dask cluster's at `address`."""
    if address is None:
        yield None
        return
    from .. import distributed
    with distributed.connect(address) as client, distributed.evaluation(client, cfg, weights, darknet) as images:
        yield images


def show_each(outcomes, show):
    """show(path, prepared, result) for each (path, prepared, result) of `outcomes` (stream.batch_results' or a
    cluster's), a DarknetError in place of the result reported as one line instead."""
    for path, prepared, outcome in outcomes:
        try:
            if isinstance(outcome, DarknetError):
                raise outcome
            show(path, prepared, outcome)
        except DarknetError as e:
            report_error(e)
        sys.stdout.flush()
