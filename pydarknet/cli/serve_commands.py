"""serve."""
import click

from ..files.config import chatter
from ..programs.serve import run_serve
from ..tasks.serve.settings import ServeSettings, byte_size
from .options import CONTEXT, common, darknet_option

DEFAULTS = ServeSettings()


@click.command("serve", context_settings=CONTEXT)
@click.argument("files", nargs=-1, metavar="[DATA] CFG WEIGHTS")
@click.option("--model", "models", multiple=True, metavar="NAME[:MODE]=[DATA,]CFG,WEIGHTS",
              help="Serve this network as NAME too (repeatable; MODE: exact, fast, bf16 or int16, its own "
                   "precision).")
@click.option("--host", default=None, help=f"Address to listen on [{DEFAULTS.host}: this machine only].")
@click.option("--port", type=int, default=None, help=f"Port [{DEFAULTS.port}; 0: a free one, named when ready].")
@click.option("--max-batch", type=int, default=None,
              help=f"Most images of one forward pass, joined from the requests waiting [{DEFAULTS.max_batch}].")
@click.option("--max-delay-ms", type=float, default=None,
              help=f"Milliseconds an image waits for others to join its batch [{DEFAULTS.max_delay_ms:g}].")
@click.option("--max-queue", type=int, default=None,
              help=f"Images waiting for a model before requests are refused with 503 [{DEFAULTS.max_queue}].")
@click.option("--timeout", type=float, default=None,
              help=f"Seconds a request waits for its answer, then 504 [{DEFAULTS.timeout:g}].")
@click.option("--exit-timeout", type=float, default=None,
              help=f"Seconds a stop signal waits for the requests in flight [{DEFAULTS.exit_timeout:g}].")
@click.option("--max-body", default=None, callback=lambda ctx, param, value: byte_size(value, "--max-body"),
              help=f"Largest request body in bytes, or with K, M or G, then 413 [{DEFAULTS.max_body // 2**20}M].")
@click.option("--max-pixels", type=int, default=None,
              help=f"Most pixels an image may declare, then 400 [{DEFAULTS.max_pixels}].")
@click.option("--api-key", envvar="PYDARKNET_API_KEY", default=None,
              help="Every route but health needs `Authorization: Bearer KEY` (also $PYDARKNET_API_KEY).")
@darknet_option
@common
def serve(files, models, host, port, max_batch, max_delay_ms, max_queue, timeout, exit_timeout, max_body, max_pixels,
          api_key, darknet, network_options, quiet, debug):
    """Serve detectors and classifiers over HTTP: KServe v2 (Triton's clients), POST /detect and /classify
    (curl --data-binary @dog.jpg localhost:8080/detect), /metrics. Until SIGTERM or Ctrl-C, which answer the
    requests in flight first."""
    run_serve(files, models, ServeSettings.given(host=host, port=port, max_batch=max_batch,
                                                 max_delay_ms=max_delay_ms, max_queue=max_queue, timeout=timeout,
                                                 exit_timeout=exit_timeout, max_body=max_body, max_pixels=max_pixels,
                                                 api_key=api_key, log_requests=not chatter["quiet"]),
              darknet, network_options, debug)
