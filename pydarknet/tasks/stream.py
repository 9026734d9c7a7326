"""Streams of images through a network: `batched` groups them, `prefetch` prepares the next ones in a background
thread while the network runs, `FirstAhead` decodes the first one while the network loads.

The overlap comes from whatever releases the GIL in the background thread (OpenCV's decoding and video reading,
numpy) and in the main thread (the matrix products). Numba's parallel kernels may run from both threads at
once only under a thread-safe threading layer (OpenMP or TBB, which pydarknet asks for first); under Numba's
workqueue layer `prefetch` stays in the calling thread.
"""
import queue
import threading
from itertools import islice

from ..files.errors import DarknetError
from ..kernels.threads import one_kernel_thread_here

_END = object()


def batched(items, size):
    """Lists of `size` consecutive items (the last one shorter)."""
    items = iter(items)
    while True:
        group = list(islice(items, size))
        if not group:
            return
        yield group


def batch_results(items, prepare, run_batch, batch=1, ahead=None):
    """(item, prepared, result) for each of `items` in order: prepare(item) runs in a background thread `ahead`
    items in advance [a batch], run_batch(list of prepared) gives a batch's results. An item that prepare fails
    with a DarknetError gives (item, None, error) and the others go on; a batch whose run fails gives its error
    once, as (None, None, error). The single-process commands and the Dask workers both run their images
    through this."""
    def prepared():
        for item in items:
            try:
                yield item, prepare(item)
            except DarknetError as e:
                yield item, e

    for group in batched(prefetch(prepared(), batch if ahead is None else ahead), batch):
        try:
            results = iter(run_batch([p for _, p in group if not isinstance(p, DarknetError)]))
        except DarknetError as e:
            yield None, None, e
            continue
        for item, p in group:
            yield (item, None, p) if isinstance(p, DarknetError) else (item, p, next(results))


def parallel_kernels_thread_safe():
    """Whether Numba's parallel kernels may run from two threads at once: under the OpenMP or TBB threading layer,
    not under Numba's workqueue. Starts Numba's thread pool (which chooses the layer) if no kernel has yet."""
    import numba
    numba.get_num_threads()
    return numba.threading_layer() in ("omp", "tbb")


class FirstAhead:
    """fn, with fn(items[0]) already under way in a background thread: the first call for that item takes the
    background's result (or raises its exception), any other call runs fn here.

    The commands decode their first image while the network loads: the decoding's first kernels load from
    Numba's cache (with its set-up) while the weights are read, in the other thread (detect yolov3-tiny
    dog.jpg: 30 ms of 0.6 s). The thread is a daemon: a command that fails on its network does not wait for it."""

    def __init__(self, fn, items):
        self.fn, self.worker, self.outcome = fn, None, {}
        if items and parallel_kernels_thread_safe():
            self.first = items[0]
            self.worker = threading.Thread(target=self._run, name="pydarknet-first", daemon=True)
            self.worker.start()

    def _run(self):
        try:
            self.outcome["value"] = self.fn(self.first)
        except BaseException as error:  # raised where the item is asked for
            self.outcome["error"] = error

    def __call__(self, item):
        if self.worker is None or item != self.first:
            return self.fn(item)
        self.worker.join()
        self.worker = None
        if "error" in self.outcome:
            raise self.outcome.pop("error")
        return self.outcome.pop("value")


def prefetch(items, ahead):
    """The items of the iterable `items`, in order, produced up to `ahead` items in advance by a background
    thread, whose parallel kernels run on it alone (one_kernel_thread_here: a kernel team of its own would share
    the cores with the forward's, whose threads then wait at every layer). An exception raised by `items` is raised
    here, where its item would have come. The first item is produced in the calling thread (it settles Numba's
    threading layer); `ahead` 0 keeps them all there. When this generator is closed early, a generator `items` is
    closed too, by the thread that runs it."""
    items = iter(items)
    ready = queue.Queue(maxsize=max(ahead, 1))
    stop = threading.Event()
    worker = None

    def offer(entry):
        """Put `entry` in the queue unless the consumer has gone; False when it has."""
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce():
        one_kernel_thread_here()
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as error:  # handed to the consumer, raised there
            offer((None, error))
        finally:
            close(items)

    try:
        first = next(items, _END)
        if first is _END:
            return
        yield first
        if ahead < 1 or not parallel_kernels_thread_safe():
            yield from items
            return
        worker = threading.Thread(target=produce, name="pydarknet-prefetch", daemon=True)
        worker.start()
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        if worker is None:
            close(items)


def close(items):
    """Close a generator (its cleanup runs now, in this thread); other iterators need nothing."""
    if hasattr(items, "close"):
        items.close()
