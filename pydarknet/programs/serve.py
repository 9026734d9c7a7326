"""`pydarknet serve`: the models the command line names, each loaded once, served over HTTP (tasks/serve)."""
import re
from dataclasses import replace

from ..tasks.options import NetworkOptions
from .file_arguments import ArgumentsError, sort_files
from .images import default_data, load_names, load_network

# A --model's precision: the products its network runs with (predict.products_name's values).
MODES = {"exact": False, "fast": True, "bf16": "bf16", "int16": "int16"}
SPEC = re.compile(r"(?P<name>[A-Za-z0-9][\w.-]*)(?::(?P<mode>\w+))?=(?P<files>.+)")


def model_spec(text):
    """(name, mode, NetworkFiles) of a --model NAME[:MODE]=[DATA,]CFG,WEIGHTS."""
    match = SPEC.fullmatch(text)
    if match is None:
        raise ArgumentsError(f"--model {text}: give NAME=CFG,WEIGHTS or NAME=DATA,CFG,WEIGHTS (NAME:fast=... for a "
                             "precision of its own: exact, fast, bf16 or int16)")
    mode = match["mode"]
    if mode is not None and mode not in MODES:
        raise ArgumentsError(f"--model {text}: unknown precision {mode!r} (exact, fast, bf16 or int16)")
    return match["name"], mode, sort_files(match["files"].split(","), ("cfg", "weights"), most=0)


def load_model(name, files, mode, darknet, network_options):
    """A ServedModel of NetworkFiles `files`: a detector or classifier as its cfg says, with the names of its .data
    or .names file (else COCO's or ImageNet's, as `detect` and `classify`) and its own products when `mode`
    names a precision (None: the command's --fast, --bf16 or --int16), on the command's device and engine (a
    runtime's precision then follows `mode`)."""
    from ..tasks.engines import use_engine
    from ..tasks.serve.models import served_model
    runtime = network_options.engine != "numba"
    loading = replace(network_options, engine="numba", devices=()) if runtime else network_options
    net = load_network(files.cfg, files.weights, darknet, table=False, network_options=loading)
    fast = None if mode is None else MODES[mode]
    model = served_model(name, net, None, fast)
    if runtime:
        use_engine(net, network_options.engine, fast, network_options.device)
    data_file = files.names or default_data("coco.data" if model.kind == "detector" else "imagenet1k.data")
    model.predictor.names, data = load_names(data_file, model.classes, files.cfg)
    model.default_top = data.int("top", 1) if files.names else 5   # classify's: top 5 without a .data file
    return model


def run_serve(files, model_specs, settings, darknet=None, network_options=NetworkOptions(), debug=False):
    """Load the models (positional `files` [DATA] CFG WEIGHTS, named after the cfg's stem, then each --model) on
    `network_options`' device and engine, and serve them with `settings` (tasks.serve.settings.ServeSettings)
    until a stop signal."""
    from pathlib import PurePath

    from ..tasks.serve.run import serve
    specs = []
    if files:
        given = sort_files(list(files), ("cfg", "weights"), most=0)
        specs.append((PurePath(given.cfg).stem, None, given))
    specs += [model_spec(text) for text in model_specs]
    if not specs:
        raise ArgumentsError("nothing to serve: give [DATA] CFG WEIGHTS, or --model NAME=CFG,WEIGHTS")
    models = {}
    for name, mode, spec in specs:
        if name in models:
            raise ArgumentsError(f"two models named {name}: give each --model a name of its own")
        models[name] = load_model(name, spec, mode, darknet, network_options)
    serve(models, settings, debug)
