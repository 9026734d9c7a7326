"""The figures /metrics gives in Prometheus's text format, those Triton's metrics give, per model: requests by
outcome, images and forward passes (their ratio the mean batch), queue and forward time, images pending. Each
server has its own registry (never prometheus_client's process-wide one): two servers in one process count apart."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Seconds: from a millisecond to a stalled queue.
BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)


class ServerMetrics:
    """`requests` counts by model and outcome: success (answered), rejected (refused: bad input, a limit, a full
    queue, a timeout, a stop), failed (the server's own error)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("pydarknet_requests", "Inference requests by model and outcome (success, rejected, "
                                "failed)", ["model", "outcome"], registry=self.registry)
        self.images = Counter("pydarknet_images", "Images inferred", ["model"], registry=self.registry)
        self.forwards = Counter("pydarknet_forwards", "Forward passes (images / forwards: the mean batch)",
                                ["model"], registry=self.registry)
        self.queue_seconds = Histogram("pydarknet_queue_seconds", "Seconds an image waited for its forward pass",
                                       ["model"], buckets=BUCKETS, registry=self.registry)
        self.forward_seconds = Histogram("pydarknet_forward_seconds", "Seconds of a batch's forward pass",
                                         ["model"], buckets=BUCKETS, registry=self.registry)
        self.pending = Gauge("pydarknet_images_pending", "Images queued or in a forward pass", ["model"],
                             registry=self.registry)

    def exposition(self):
        """(body, content type) of /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
