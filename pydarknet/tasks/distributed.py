"""Detection, classification and evaluation on a Dask cluster (`--dask ADDRESS`; the dask extra).

    from distributed import Client
    from pydarknet.tasks import distributed
    with Client("tcp://scheduler:8786") as client:
        for path, result in distributed.detect(paths, "cfg/yolov3-tiny.cfg", "yolov3-tiny.weights", client=client):
            ...   # a DetectionResult, or the DarknetError of an image that could not be used

The client cuts the images into chunks and keeps a sliding window of chunk futures in flight (memory stays
bounded on any input length); results come back per chunk, in input order or as they complete. A chunk that was
on a worker that died is rerun by Dask, and its results arrive once, as a whole. Each worker builds the network
once per cfg, weights and options, and keeps it for the run. The cfg, weights and class names go to each worker
once, as bytes in a worker plugin (which Dask also hands to a worker that replaces a dead one); a cfg or weights
given as a URL (s3://, gs://, http://, file://) travels as its URL and each worker reads it through fsspec, as
it does images given as URLs.
"""
import hashlib
import logging
import threading
import uuid
from collections import deque
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path

from ..kernels.threads import cores
from ..files.errors import DarknetError, install_hint
from ..files.resources import find_argument, is_url, read_url
from .options import Preprocessing, Thresholds, given
from .stream import batch_results, batched

try:
    from distributed import WorkerPlugin
except ImportError:          # without the extra, only `connect` is reached, and it says what to install
    WorkerPlugin = object

EXTRA = install_hint("dask")

# Images per task: enough that a task's overhead (a few milliseconds) is small beside its images' work.
CHUNK = 16

# The thread pools of a worker process: Numba's kernels and the BLAS under numpy's products.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def require_dask():
    try:
        import distributed
    except ImportError:
        raise DarknetError(f"--dask needs Dask's distributed scheduler: {EXTRA}") from None
    return distributed


@contextmanager
def connect(address):
    """A Client of the scheduler at `address` (tcp://host:8786), or for `local:N` of a LocalCluster of N worker
    processes started here, one thread each and the cores shared among their thread pools so that N workers do
    not oversubscribe them; that cluster is closed on the way out however the run ends (Ctrl-C included)."""
    distributed = require_dask()
    import dask
    if not address.startswith("local:"):
        with distributed.Client(address, timeout="10s") as client:
            yield client
        return
    count = address.removeprefix("local:")
    if not count.isdigit() or int(count) < 1:
        raise DarknetError(f"--dask {address}: local:N needs a number of worker processes N >= 1")
    workers = int(count)
    threads = str(max(1, cores() // workers))
    # Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, which turns glibc's adaptive mmap threshold off:
    # each layer's output is then a fresh mmap, page faults and all (measured: yolov3-tiny 30 % slower).
    # Logs below CRITICAL stay quiet: as the cluster closes, a worker's heartbeat can race the scheduler's exit and
    # log an ERROR with a traceback (dask/distributed#7105); a task's own failure reaches the client anyway.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                                     env={name: threads for name in THREAD_VARIABLES}) as cluster, \
            distributed.Client(cluster) as client:
        yield client


# -- the files a worker builds its network from ---------------------------------------------------------------
def source(path, find):
    """What a worker gets of a cfg or weights argument: its URL, else the bytes of the file `find` resolves."""
    return str(path) if is_url(path) else Path(find(str(path))).read_bytes()


class NetworkFiles(WorkerPlugin):
    """A run's cfg, weights (each bytes, or a URL) and class names, set up on each worker once. `digest` names
    their content: the networks built from them are kept per digest, whatever run registered them."""

    def __init__(self, cfg, weights, names=None):
        from ..files.weights import find_weights
        self.cfg, self.weights = source(cfg, find_argument), source(weights, find_weights)
        self.names = list(names) if names is not None else None
        self.file_names = (Path(str(cfg)).name, Path(str(weights)).name)
        hashed = hashlib.sha256()
        for part in (self.cfg, self.weights, "\n".join(self.names or [])):
            hashed.update(part if isinstance(part, bytes) else part.encode())
            hashed.update(b"\0")
        self.digest = hashed.hexdigest()[:16]
        self.name = f"pydarknet-{self.digest}-{uuid.uuid4().hex[:8]}"   # one per run: runs end independently

    def setup(self, worker):
        self.folder = Path(worker.local_directory) / f"pydarknet-{self.digest}"
        _FILES[self.name] = self

    def teardown(self, worker):
        _FILES.pop(self.name, None)
        if not any(files.digest == self.digest for files in _FILES.values()):
            with _LOCK:
                for key in [key for key in _MODELS if key[0] == self.digest]:
                    del _MODELS[key]

    def paths(self):
        """Local files of the cfg and weights, written (or fetched) on first use."""
        local = []
        for data, name in zip((self.cfg, self.weights), self.file_names):
            path = self.folder / name
            if not path.exists():
                self.folder.mkdir(parents=True, exist_ok=True)
                partial_path = path.with_name(f"{name}.{uuid.uuid4().hex[:8]}.part")
                partial_path.write_bytes(read_url(data) if isinstance(data, str) else data)
                partial_path.replace(path)   # whole or not at all, for another thread or a later run
            local.append(str(path))
        return local


# -- on the workers ---------------------------------------------------------------------------------------------
_FILES = {}    # plugin name -> NetworkFiles, in each worker process
_MODELS = {}   # (digest, build, options) -> (built model, its lock)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Model:
    """What the tasks of a run name: the plugin holding the files, build(cfg, weights, names, **options), and the
    client's products backend (--fast or not: process-wide there, so the workers follow it task by task)."""
    files: str
    build: object
    options: tuple
    products: str


def network(cfg, weights, names=None, darknet=None, engine="numba"):
    """A worker's network for evaluate.py's per-image work (evaluation): predict.network_from_files's, run by
    `engine`."""
    from .options import NetworkOptions
    from .predict import network_from_files
    return network_from_files(cfg, weights, darknet, NetworkOptions(engine=engine))


def built(model):
    """The worker's network for `model`, built on first use and kept, with a lock: a worker with several
    threads runs one task on it at a time (a network's layers keep their outputs)."""
    files = _FILES.get(model.files)
    if files is None:
        raise DarknetError(f"the worker has no {model.files}: the run that registered it has ended")
    key = (files.digest, model.build, model.options)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = (model.build(*files.paths(), names=files.names, **dict(model.options)), threading.Lock())
        return _MODELS[key]


def run_chunk(model, work, chunk):
    """A task: work(the worker's network, chunk of items), with the client's products."""
    from ..kernels.products import set_backend
    net, lock = built(model)
    with lock:
        previous = set_backend(model.products)
        try:
            return work(net, chunk)
        finally:
            set_backend(previous)


def predict_chunk(method, call, batch, model, paths):
    """[(path, result or DarknetError)] of a chunk of images through model.`method` (detect_batch or
    classify_batch), `batch` at a time, as the single-process commands run them."""
    def run_batch(prepared):
        return getattr(model, method)(prepared, **call)
    return [(path, outcome) for path, _, outcome in batch_results(paths, model.prepare, run_batch, batch)]


def each_item(work, net, items):
    return [work(net, item) for item in items]


# -- on the client --------------------------------------------------------------------------------------------
@contextmanager
def registered(client, build, cfg, weights, names=None, **options):
    """The Model of a run: its files registered as a worker plugin until the run ends."""
    from ..kernels.products import backend
    files = NetworkFiles(cfg, weights, names)
    client.register_plugin(files, name=files.name)
    try:
        yield Model(files.name, build, tuple(sorted(options.items())), backend())
    finally:
        with suppress(Exception):   # a cluster gone (or going, after Ctrl-C) has nothing left to unregister
            client.unregister_worker_plugin(files.name)


def map_chunks(client, model, work, items, chunk=CHUNK, window=None, ordered=True):
    """work(network, chunk) on the workers for each chunk of `items`, with at most `window` chunks in flight
    [two per worker thread]: yields what it returns, in input order or, `ordered` False, as chunks complete.
    Closing it early (Ctrl-C) cancels the chunks in flight."""
    import distributed
    window = window or 2 * max(1, sum(client.nthreads().values()))
    chunks = batched(items, chunk)
    pending = deque()

    def submit(count):
        new = [client.submit(run_chunk, model, work, group, pure=False) for group in islice(chunks, count)]
        pending.extend(new)
        return new

    try:
        submit(window)
        if ordered:
            while pending:
                results = pending[0].result()
                pending.popleft()
                submit(1)
                yield results
        else:
            completed = distributed.as_completed(list(pending))
            for future in completed:
                pending.remove(future)
                completed.update(submit(1))
                yield future.result()
    finally:
        if pending:
            client.cancel(list(pending))


def default_client(client):
    return client if client is not None else require_dask().default_client()


def predictions(build, method, call, paths, cfg, weights, client, names, options, batch, chunk, window, ordered):
    work = partial(predict_chunk, method, call, batch)
    with registered(client, build, cfg, weights, names, **options) as model:
        for results in map_chunks(client, model, work, paths, max(chunk, batch), window, ordered):
            yield from results


def detect(paths, cfg, weights, client=None, names=None, thresh=None, hier_thresh=None, nms=None, letterbox=None,
           decoder=None, darknet=None, batch=1, chunk=CHUNK, window=None, ordered=True, tiles=None,
           skip_classes=(), thresholds=None, preprocessing=None, engine=None):
    """(path, DetectionResult) for each of `paths` (an iterable: read as chunks are sent), detected on the
    workers of `client` [Dask's default client] as predict.Detector(cfg, weights, names, letterbox, decoder,
    darknet=darknet, tiles=tiles, skip_classes=skip_classes, preprocessing=preprocessing, engine=engine)
    .detect_batch(...,
    thresh, hier_thresh, nms, thresholds) would (options.Thresholds and options.Preprocessing, the arguments given
    in their place; None: the defaults), `batch` images per forward pass. An image that cannot be used gives its
    DarknetError in place of the result, and a batch whose forward pass fails gives its error once as (None,
    error); the others go on. `ordered` False: results as they complete."""
    from .predict import Detector
    chosen = given(Thresholds, thresholds, thresh=thresh, hier_thresh=hier_thresh, nms=nms)
    sizing = given(Preprocessing, preprocessing, letterbox=letterbox, decoder=decoder, tiles=tiles)
    yield from predictions(Detector, "detect_batch", dict(thresholds=chosen), paths, cfg, weights,
                           default_client(client), names,
                           dict(darknet=darknet, preprocessing=sizing, skip_classes=tuple(sorted(skip_classes)),
                                engine=engine),
                           batch, chunk, window, ordered)


def classify(paths, cfg, weights, client=None, names=None, top=5, preprocess="resize_min", decoder="darknet",
             darknet=None, batch=1, chunk=CHUNK, window=None, ordered=True, engine=None):
    """(path, ClassifyResult) for each of `paths`, as `detect` but with predict.Classifier's classify_batch."""
    from .predict import Classifier
    yield from predictions(Classifier, "classify_batch", dict(top=top), paths, cfg, weights,
                           default_client(client), names,
                           dict(preprocess=preprocess, decoder=decoder, darknet=darknet, engine=engine),
                           batch, chunk, window, ordered)


@contextmanager
def evaluation(client, cfg, weights, darknet=None, chunk=CHUNK, engine="numba"):
    """The runner that evaluate.py's run_map, run_valid, run_recall and run_classifier_valid take as `images`:
    images(work, items) yields work(network, item) for each item, in order, computed on the workers."""
    with registered(client, network, cfg, weights, darknet=darknet, engine=engine) as model:
        def images(work, items):
            for results in map_chunks(client, model, partial(each_item, work), items, chunk):
                yield from results
        yield images

