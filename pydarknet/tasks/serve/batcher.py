"""Dynamic batching, as Triton's dynamic batcher: the images waiting for one model join one forward pass.

Requests put their prepared images in the model's queue (refused at once when it is full); the model's worker
thread takes the first image waiting, waits up to `max_delay_ms` for more, runs up to `max_batch` of them through
ServedModel.run with pydarknet's kernel threads, and hands each result to its request's future on the event loop
(which never runs a forward). An image whose request has gone (timed out, disconnected) is dropped unrun.
"""
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(eq=False)
class Job:
    """One image of a request: its PreparedImage (or what makes it: a function the worker calls first, for an image
    that came to a model at rest) and RequestOptions, the asyncio future its result goes to, the loop that future
    belongs to."""
    prepared: object
    options: object
    future: object
    loop: object
    queued: float = 0.0
    dropped: bool = False   # its request has gone: never run

    def settle(self, result=None, error=None):
        """Hand the result (or error) to the future, from the worker thread."""
        self.loop.call_soon_threadsafe(_settle, self.future, result, error)


def _settle(future, result, error):
    if not future.done():
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class Batcher:
    """The queue and worker thread of one ServedModel."""

    def __init__(self, model, settings, metrics):
        self.model = model
        self.max_batch, self.max_queue = settings.max_batch, settings.max_queue
        self.max_delay = settings.max_delay_ms / 1000
        self.metrics = metrics
        self.waiting = deque()
        self.running = 0   # jobs in the forward pass now
        self.turn = threading.Condition()
        self.closed = False
        self.worker = threading.Thread(target=self._work, name=f"serve-{model.name}", daemon=True)
        self.worker.start()

    def submit(self, jobs):
        """Queue a request's jobs: False (nothing queued) when they would take the queue past max_queue."""
        with self.turn:
            if len(self.waiting) + len(jobs) > self.max_queue or self.closed:
                return False
            now = time.perf_counter()
            for job in jobs:
                job.queued = now
            self.waiting.extend(jobs)
            self.metrics.pending.labels(self.model.name).inc(len(jobs))
            self.turn.notify()
        return True

    @property
    def idle(self):
        """Nothing waiting, nothing running."""
        return not self.waiting and not self.running

    def close(self):
        """Stop the worker once the jobs queued are done."""
        with self.turn:
            self.closed = True
            self.turn.notify()
        self.worker.join()

    def _next_batch(self):
        """The next jobs to run (after max_delay for more, from the first's arrival), or None once closed."""
        with self.turn:
            while not self.waiting and not self.closed:
                self.turn.wait()
            if not self.waiting:
                return None
            deadline = self.waiting[0].queued + self.max_delay
            while len(self.waiting) < self.max_batch and not self.closed:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self.turn.wait(left)
            batch = [self.waiting.popleft() for _ in range(min(self.max_batch, len(self.waiting)))]
            self.running = len(batch)
            return batch

    @staticmethod
    def _prepared(job):
        """Make the job's PreparedImage if it came as a function: False (the job settled with the error) if that
        fails, as for an image that cannot be decoded."""
        if callable(job.prepared):
            try:
                job.prepared = job.prepared()
            except Exception as e:
                job.settle(error=e)
                return False
        return True

    def _work(self):
        name = self.model.name
        while (batch := self._next_batch()) is not None:
            live = [job for job in batch if not job.dropped and self._prepared(job)]
            started = time.perf_counter()
            for job in live:
                self.metrics.queue_seconds.labels(name).observe(started - job.queued)
            try:
                if live:
                    options = [job.options for job in live]
                    results = self.model.run([job.prepared for job in live], options)
                    self.metrics.forward_seconds.labels(name).observe(time.perf_counter() - started)
                    self.metrics.forwards.labels(name).inc(self.model.forwards(options))
                    self.metrics.images.labels(name).inc(len(live))
                    for job, result in zip(live, results):
                        job.settle(result)
            except Exception as e:   # the request answers 500 with it; the worker goes on
                for job in live:
                    job.settle(error=e)
            finally:
                self.running = 0
                self.metrics.pending.labels(name).dec(len(batch))
