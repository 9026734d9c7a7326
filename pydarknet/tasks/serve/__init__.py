"""`pydarknet serve`: detectors and classifiers behind HTTP (KServe v2, REST, metrics), batched, bounded, drained.
May import: the other tasks, network, results, kernels, files; Starlette, uvicorn, prometheus_client (`serve` extra).

On KServe's v2 protocol (Triton's clients work unchanged) and a plain REST route, with dynamic batching,
metrics, bounded queues and clean stops.

    settings.py  ServeSettings: the limits and addresses, one home for their defaults and checks
    models.py    ServedModel: a loaded Detector or Classifier, its request options, its answers and tensors
    batcher.py   the dynamic batcher: a queue and a worker thread per model
    v2.py        the v2 protocol's requests and answers, with Triton's binary tensor extension
    app.py       the ASGI application (Starlette): routes, limits, errors, the request log
    metrics.py   Prometheus's figures;  openapi.py  the REST routes' description
    run.py       the process: warm, listen, serve, drain on a stop signal
"""
