"""Images through a network as the commands take them: named on the command line, one path per line of stdin or
one image piped on stdin, `batch` at a time, in this process or on a Dask cluster; each result shown in input
order, an image that cannot be used reported as one line while the others go on."""
import itertools
import sys
from contextlib import contextmanager
from pathlib import Path

from ..files.config import DarknetError, note
from ..files.config import default_data, load_names  # noqa: F401  (the commands import them from here)
from ..tasks import preload
from ..tasks.engines import engine_name
from ..tasks.options import NetworkOptions
from ..tasks.stream import batch_results
from .file_arguments import ArgumentsError, check_order


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


# An image piped on stdin (`cat dog.jpg | pydarknet detect CFG WEIGHTS`) is told from piped paths by its first
# bytes (no path starts with a JPEG's or a PNG's signature); it goes by PIPED in the results and -crop's names.
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
PIPED = "stdin"


class Images:
    """A command's images: `listed` (named on the command line, or [PIPED] for an image piped on stdin, whose
    bytes are `piped`), else `lines` (the paths on a piped stdin's lines), else neither (a terminal: image_paths
    asks for paths as they are typed)."""

    def __init__(self, listed=None, lines=None, piped=None):
        self.listed, self.lines, self.piped = listed, lines, piped

    @property
    def names(self):
        """What for_each_batch and on_cluster take: the listed names, else the piped lines (None at a terminal)."""
        return self.listed or self.lines

    def loader(self, decoder):
        """load(name): image.load_image's image of the file `name`, or of the piped bytes."""
        from ..files.image import decode_image, load_image
        if self.piped is not None:
            return lambda name: decode_image(self.piped, name, decoder)
        return lambda name: load_image(name, decoder)


def command_images(images, cluster=False):
    """The Images of a command given `images` (its IMAGE arguments): those, else what a piped (or redirected)
    stdin holds: a JPEG or PNG image (its bytes start with the signature), or image paths, one per line, the first
    read now so that an empty stdin is one line before any network loads. `cluster`: the images go to a Dask
    cluster's workers, which read files, not this process's stdin. Raises ArgumentsError (a usage error)."""
    if images:
        return Images(listed=list(images))
    if sys.stdin.isatty():
        return Images()
    start = stdin_start()   # all of a signature, or as much as has come
    if start and any(start.startswith(signature) or signature.startswith(start) for signature in SIGNATURES):
        if cluster:
            raise ArgumentsError("an image piped on stdin stays in this process: pipe its path instead, or run "
                                 "without --dask")
        return Images(listed=[PIPED], piped=sys.stdin.buffer.read())
    if b"\0" in start:
        raise ArgumentsError("stdin holds binary data, neither a JPEG nor a PNG image: pipe one of those, or image "
                             "paths, one per line")
    paths = image_paths(None)
    first = next(paths, None)
    if first is None:
        raise ArgumentsError("no image: stdin is empty; give IMAGE paths as arguments, or pipe in their paths (one "
                             "per line) or a JPEG or PNG image")
    return Images(lines=itertools.chain([first], paths))


def stdin_start():
    """stdin's first bytes (up to a signature's length; fewer when fewer have come), left in place for the reads
    that follow; b"" at its end, or for a stdin of text only (a test's StringIO)."""
    peek = getattr(getattr(sys.stdin, "buffer", None), "peek", None)
    return peek(len(SIGNATURES[1]))[:len(SIGNATURES[1])] if peek is not None else b""


def load_network(cfg, weights, darknet=None, table=True, role=None, network_options=None):
    """Build and load a network, showing darknet's layer table on stderr as darknet does at load. A cfg or
    weights given as a URL is read through fsspec. `role`: "detector" or "classifier", checked before the
    weights are read (predict.check_role). `network_options`: the command's tasks.options.NetworkOptions (its
    device, --strict and --engine; None: the CPU, not strict, pydarknet's own kernels), as
    tasks.predict.network_from_files takes them."""
    from ..kernels.products import backend
    from ..tasks.predict import network_from_files
    check_order(cfg, weights)
    chosen = network_options or NetworkOptions()
    net = network_from_files(cfg, weights, darknet, chosen, role, show_table if table else None, urls=True)
    if chosen.engine == "numba":
        preload.load_recorded(f"{Path(cfg).name} {backend()}")   # before the first pass is timed
        net.prepare()
    if table:
        note(net.darknet_line())
    return net


def show_table(net):
    """darknet's layer table on stderr, as darknet shows it while it loads a network."""
    note("\n".join(net.summary()))


def for_each_batch(images, prepare, run_batch, show, batch=1):
    """The images named (or read from stdin), `batch` at a time through the network: prepare(path) loads one
    and makes the network's input, in a background thread a batch ahead; run_batch(prepared list) gives their
    results; show(path, prepared, result) prints one. Results come in input order; an image that cannot be
    used is reported and the others go on. Paths typed at a terminal go one at a time, as they come."""
    interactive = not images and sys.stdin.isatty()
    batch = 1 if interactive else batch
    show_each(batch_results(image_paths(images), prepare, run_batch, batch, 0 if interactive else batch), show)


def on_cluster(address, predict, images, show, *args, **options):
    """The images named (or read from stdin) through pydarknet.tasks.distributed's `predict` (detect or classify) on
    the Dask cluster at `address`, each result shown as for_each_batch shows it (show(path, None, result)), in
    input order unless options say ordered=False."""
    from ..tasks import distributed
    if not images and sys.stdin.isatty():
        options.update(chunk=1, window=1)   # paths typed at a terminal go one at a time, as they come
    with distributed.connect(address) as client:
        results = getattr(distributed, predict)(image_paths(images), *args, client=client, **options)
        show_each(((path, None, result) for path, result in results), show)


def over_valid_list(evaluation, data_file, cfg, weights, dask=None, darknet=None, network_options=None, **options):
    """evaluate.py's `evaluation` (run_map, run_valid, ...) over the data file's valid= list, the network loaded
    here (no layer table; `network_options` as load_network's) and the per-image work done in this process or on
    the Dask cluster at `dask`."""
    net = load_network(cfg, weights, darknet, table=False, network_options=network_options)
    with evaluation_images(dask, cfg, weights, darknet, engine_name(net)) as images:
        return evaluation(data_file, cfg, weights, network=net, images=images, **options)


@contextmanager
def evaluation_images(address, cfg, weights, darknet, engine="numba"):
    """evaluate.py's runner of the per-image work: None (this process), or the Dask cluster's at `address` (its
    workers' networks run by `engine`)."""
    if address is None:
        yield None
        return
    from ..tasks import distributed
    with distributed.connect(address) as client, \
            distributed.evaluation(client, cfg, weights, darknet, engine=engine) as images:
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
