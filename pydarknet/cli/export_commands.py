"""export onnx."""
import click

from ..files.config import note
from ..programs.images import load_names, load_network
from ..tasks.options import NetworkOptions
from .options import CONTEXT, cfg_options, darknet_option


def batch_size(ctx, param, value):
    """--batch: a positive number, or `dynamic` (None: the graph takes any batch size)."""
    if value == "dynamic":
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise click.BadParameter(f"{value!r}: a positive number or 'dynamic'")


@click.command("onnx", context_settings=CONTEXT)
@click.argument("cfg")
@click.argument("weights")
@click.argument("out")
@click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True, help="ONNX opset version.")
@click.option("--batch", default="1", show_default=True, callback=batch_size,
              help="Batch size of the graph: N, or dynamic.")
@click.option("--decode", is_flag=True,
              help="Outputs boxes (relative to the image) and scores instead of the raw output layers: only NMS "
                   "is left (pydarknet.tasks.onnx.postprocess). Letterboxing networks then also take image_size.")
@click.option("--fp16", is_flag=True,
              help="float16 weights and arithmetic after the first layer (float32 input, first layer and outputs).")
@click.option("--data", default=None, help="A .data file whose names= go into the model's metadata.")
@darknet_option
@cfg_options
def export_onnx(cfg, weights, out, opset, batch, decode, fp16, data, darknet, strict, quiet, debug):
    """Export CFG + WEIGHTS as one ONNX graph in OUT (needs the onnx extra)."""
    from ..tasks.onnx import export as export_graph, onnx_package
    onnx_package()
    net = load_network(cfg, weights, darknet, table=False, network_options=NetworkOptions(strict=strict))
    names = load_names(data, 0, cfg)[0] if data else None
    model = export_graph(net, out, opset=opset, batch=batch, decode=decode, fp16=fp16, names=names)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        note(f"{value.name}: {' x '.join(map(str, dims))}")
    note(f"saved {out}")
