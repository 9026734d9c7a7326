"""pydarknet.tasks.onnx: every golden forward case (pjreddie's and the fork's), the real models and hand-written
networks of every layer type exported, checked with onnx.checker, run in ONNX Runtime on pydarknet's input and compared
output by output with pydarknet's forward; --decode's boxes against pydarknet's decoded boxes; yolov3-tiny's
dog.jpg detections through ONNX Runtime and postprocess."""
import json

import numpy as np
import onnx   # the onnx extra, which the test extra installs
import onnxruntime
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from conftest import ROOT, SHARED, shared_path
from golden import case_paths, or_skip
from pydarknet.cli import main
from pydarknet.files.config import DarknetError
from pydarknet.files.image import letterbox_image, load_image, resize_image  # noqa: E402
from pydarknet.network.network import Network  # noqa: E402
from pydarknet.results.detections import network_detections  # noqa: E402
from pydarknet.tasks.onnx import EXPORTERS, export, letterboxes, postprocess  # noqa: E402

TOLERANCE = 1e-4        # |onnx - pydarknet| <= TOLERANCE * max(1, |pydarknet|), element by element
FP16_TOLERANCE = 1e-2
# Two golden cases are deep random-weight networks (75 convolutions, activations up to 2e3) whose outputs carry
# more than 1e-4 of float32 rounding in any summation order: darknet's own leaves them 2.8e-4 (yolov3_slim) and
# 3.2e-4 (yolov3-spp_slim) from their float64 value, ONNX Runtime's 0.6e-4 and 1.2e-4, pydarknet's BLAS products
# 1.2e-4 / 1.6e-4 and its --fast ones 1.3e-4 / 2.5e-4. So ONNX Runtime is 2.2e-4 / 3.1e-4 from pydarknet (BLAS
# 1.6e-4 / 3.6e-4, --fast 1.8e-4 / 2.5e-4; ONNX Runtime without its graph fusions, or with batch-norm as separate
# ops in darknet's order: 1.3e-4 to 4.0e-4). In float16, rounding their weights alone moves pydarknet's outputs by
# 0.15 and 0.28, the weights and every layer's output rounded 0.09 and 0.35 (the float16 graph: 0.17 both): where
# the roundings fall changes these floors up to twofold. They are held to the tolerances on top of those
# floors (float16: twice the weights'), measured each run by deep_random_floors, which also checks that ONNX
# Runtime is no further than pydarknet from the float64 value.
DEEP_RANDOM = ("yolov3_slim", "yolov3-spp_slim")

GOLDEN = [pytest.param(p, "pjreddie", id=p.name) for p in sorted((SHARED / "golden" / "forward").glob("*/"))] + \
    [pytest.param(p, "ab", id=p.name) for p in sorted((SHARED / "golden" / "forward_ab").glob("*/"))]


def scaled_error(ours, ref):
    """The largest |ours - ref| / max(1, |ref|); equal infinities and NaN against NaN count as equal."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(ours - ref) / np.maximum(1.0, np.abs(ref))
    err[(ours == ref) | (np.isnan(ours) & np.isnan(ref))] = 0
    err[np.isnan(err)] = np.inf
    return float(err.max()) if err.size else 0.0


def run(model, x, image_size=None):
    """{output name: array} of the model in ONNX Runtime."""
    onnx.checker.check_model(model)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"input": np.asarray(x, np.float32)}
    if image_size is not None:
        feed["image_size"] = np.asarray(image_size, np.float32)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def layer_index(name):
    """The index of the layer whose output a graph output layer_<index>_<type> is."""
    return int(name.split("_")[1])


def worst_output(net, outputs):
    """(scaled error, name) of the output furthest from pydarknet's."""
    errors = [(scaled_error(value, net.layers[layer_index(name)].output), name) for name, value in outputs.items()]
    return max(errors)


def golden_net(case_dir, darknet, float16_weights=False):
    """The case's network after pydarknet's forward on its input (with its parameters rounded to float16 if
    asked); (net, input, image (w, h))."""
    info, cfg, weights = case_paths(case_dir, SHARED)
    net = Network(cfg, quiet_unused=True)
    net.load(weights)
    if float16_weights:
        for layer in net.layers:
            for array in layer.weight_arrays():
                array[...] = array.astype(np.float16)
    if darknet == "ab":   # the fork's cases store no input: it is made from the image, as the fork's detector does
        net.fuse_batchnorm = bool(info["fuse_batchnorm"])
        im = load_image(SHARED / info["image"])
        x = (letterbox_image if info["preprocess"] == "letterbox" else resize_image)(im, net.w, net.h)
    else:
        im = load_image(SHARED / info["image"])
        x = np.load(case_dir / "input.npy")
        if x.shape != net.input_shape:   # resize_min cases: darknet resized the network to the image
            net.resize(x.shape[2], x.shape[1])
    net.forward(x[None])
    return net, x[None], (im.shape[2], im.shape[1])


def forward_float64(net, x):
    """Each layer's output, computed in float64 from the same input and parameters, for pjreddie's YOLOv3-like
    networks (convolution with batch-norm, leaky or linear; shortcut, route, upsample, stride-1 maxpool, yolo):
    the value that every float32 summation order approximates."""
    outputs = []
    for layer in net.layers:
        x = outputs[-1] if outputs else x[0].astype(np.float64)
        kind = layer.type
        if kind == "convolutional":
            assert layer.groups == layer.dilation == 1 and layer.activation in ("leaky", "linear")
            p, s, k = layer.pad, layer.stride, layer.size
            windows = sliding_window_view(np.pad(x, ((0, 0), (p, p), (p, p))), (k, k), (1, 2))[:, ::s, ::s]
            y = np.einsum("chwij,fcij->fhw", windows, layer.weights.reshape(layer.filters, -1, k, k).astype(float))
            if layer.batch_normalize:
                root = np.sqrt(layer.rolling_variance.astype(float)) + .000001
                y = (y - layer.rolling_mean[:, None, None]) / root[:, None, None] * layer.scales[:, None, None]
            y = y + layer.biases[:, None, None]
            y = np.where(y > 0, y, .1 * y) if layer.activation == "leaky" else y
        elif kind == "shortcut":
            assert layer.alpha == layer.beta == 1 and layer.activation == "linear"
            y = x + outputs[layer.source]
        elif kind == "route":
            y = np.concatenate([outputs[i] for i in layer.reads_layers])
        elif kind == "upsample":
            y = x.repeat(layer.stride, 1).repeat(layer.stride, 2)
        elif kind == "maxpool":   # darknet's size - 1 padding around, odd sizes: the same on every side
            assert layer.stride_x == layer.stride_y == 1 and layer.size % 2 == 1 and layer.padding == layer.size - 1
            p = layer.size // 2
            padded = np.pad(x, ((0, 0), (p, p), (p, p)), constant_values=-np.inf)
            y = sliding_window_view(padded, (layer.size, layer.size), (1, 2)).max((3, 4))
        else:
            assert kind == "yolo"
            y = x.reshape(layer.n, layer.classes + 5, -1).copy()
            logistic = [0, 1] + list(range(4, layer.classes + 5))
            with np.errstate(over="ignore"):
                y[:, logistic] = 1 / (1 + np.exp(-y[:, logistic]))
            y = y.reshape(x.shape)
        outputs.append(y)
    return outputs


def deep_random_floors(case_dir, net, x, onnx_outputs):
    """(float32, float16) distances of a deep random net's outputs that no other computation of them can be
    expected to beat: pydarknet's from their float64 value (checking that ONNX Runtime's are no further from
    it), and pydarknet's own outputs with its parameters rounded to float16 from its float32 ones."""
    exact = forward_float64(net, x)
    layers = {name: layer_index(name) for name in onnx_outputs}
    ours = max(scaled_error(net.layers[i].output[0], exact[i]) for i in layers.values())
    theirs = max(scaled_error(onnx_outputs[name][0], exact[i]) for name, i in layers.items())
    assert ours > TOLERANCE, f"darknet's order is {ours:.3g} from the float64 value: hold the case to {TOLERANCE}"
    assert theirs <= ours, f"ONNX Runtime is {theirs:.3g} from the float64 value, pydarknet {ours:.3g}"
    rounded, _, _ = golden_net(case_dir, "pjreddie", float16_weights=True)
    float16 = max(scaled_error(rounded.layers[i].output, net.layers[i].output) for i in layers.values())
    assert float16 > FP16_TOLERANCE, f"float16 weights move the outputs by {float16:.3g} only"
    return ours, float16


@pytest.mark.parametrize("case_dir,darknet", or_skip(GOLDEN, "golden/forward and golden/forward_ab", names=2))
def test_golden_case_exports_and_matches(case_dir, darknet):
    """float32 within 1e-4, float16 within 1e-2 (deep random nets: on top of their floors, see DEEP_RANDOM), and
    decoded boxes and scores equal to pydarknet's decoding before NMS (network_detections at a threshold that
    keeps every candidate). A deep random net's boxes are decoded by pydarknet from ONNX Runtime's raw outputs:
    exp(t) amplifies the raw outputs' floor (pydarknet's boxes are 5.3e-4 and 5.8e-4 from those decoded from the
    float64 outputs), and the decoding itself is what is checked here (3.5e-6 from pydarknet's)."""
    net, x, (w, h) = golden_net(case_dir, darknet)
    outputs = run(export(net), x)
    tolerance, fp16_tolerance = TOLERANCE, FP16_TOLERANCE
    if case_dir.name in DEEP_RANDOM:
        floor, fp16_floor = deep_random_floors(case_dir, net, x, outputs)
        tolerance, fp16_tolerance = TOLERANCE + floor, FP16_TOLERANCE + 2 * fp16_floor
    error, name = worst_output(net, outputs)
    assert error <= tolerance, f"{name}: scaled error {error:.3g}"
    error, name = worst_output(net, run(export(net, fp16=True), x))
    assert error <= fp16_tolerance, f"float16 {name}: scaled error {error:.3g}"
    if not any(layer.type in ("yolo", "region", "detection") for layer in net.layers):
        return
    model = export(net, decode=True)
    needs_size = len(model.graph.input) == 2   # the graph corrects the boxes for a letterbox as the detector would
    assert needs_size == (letterboxes(net) and net.layers[-1].type != "detection")
    if case_dir.name in DEEP_RANDOM:   # pydarknet decodes ONNX Runtime's raw outputs (see above)
        for name, value in outputs.items():
            net.layers[layer_index(name)].output = value
    outputs = run(model, x, [[w, h]] if needs_size else None)
    with np.errstate(over="ignore"):   # the random-weight yolov3-spp_slim's infinite boxes
        dets = network_detections(net, w, h, -1, relative=True, letterbox=needs_size)
    if net.layers[-1].type == "detection":   # darknet's YOLOv1 boxes are in pixels whatever `relative` says
        dets.bbox /= np.float32([w, h, w, h])
    assert outputs["boxes"].shape == (1,) + dets.bbox.shape
    assert scaled_error(outputs["boxes"][0], dets.bbox) <= TOLERANCE
    assert scaled_error(outputs["scores"][0], dets.prob) <= TOLERANCE


def test_golden_cases_present():
    shared_path("golden", "forward_ab")
    assert len(GOLDEN) >= 34


@pytest.mark.parametrize("cfg,weights,prepare", [
    ("yolov3-tiny.cfg", "yolov3-tiny.weights", letterbox_image),
    ("yolov4-tiny.cfg", "yolov4-tiny.weights", resize_image),
    ("yolo-fastest-1.1.cfg", "yolo-fastest-1.1.weights", resize_image), ("tiny.cfg", "tiny.weights", resize_image)])
def test_real_model_matches(cfg, weights, prepare):
    net = Network(shared_path("cfg", cfg), quiet_unused=True)
    net.load(shared_path("models", weights))
    x = prepare(load_image(SHARED / "images" / "dog.jpg"), net.w, net.h)[None]
    net.forward(x)
    error, name = worst_output(net, run(export(net), x))
    assert error <= TOLERANCE, f"{name}: scaled error {error:.3g}"
    error, name = worst_output(net, run(export(net, fp16=True), x))
    assert error <= FP16_TOLERANCE, f"float16 {name}: scaled error {error:.3g}"


def test_dynamic_and_fixed_batch():
    """Two different images in one run, through a dynamic-batch graph and a batch-2 graph."""
    net = Network(shared_path("cfg", "yolov4-tiny.cfg"), quiet_unused=True)
    net.load(shared_path("models", "yolov4-tiny.weights"))
    images = [load_image(SHARED / "images" / name) for name in ("dog.jpg", "person.jpg")]
    x = np.stack([resize_image(im, net.w, net.h) for im in images])
    net.forward(x)
    for batch in (None, 2):
        model = export(net, batch=batch)
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == ("batch" if batch is None else "")
        error, name = worst_output(net, run(model, x))
        assert error <= TOLERANCE, f"batch {batch}: {name}: scaled error {error:.3g}"


def test_yolov3_tiny_dog_detections_through_onnx_runtime():
    """The exported yolov3-tiny plus postprocess gives pjreddie's `detect` result on dog.jpg: dog 57%, car 52%,
    truck 56%, car 62%, bicycle 59% at thresh .5."""
    net = Network(shared_path("cfg", "yolov3-tiny.cfg"), quiet_unused=True)
    net.load(shared_path("models", "yolov3-tiny.weights"))
    im = load_image(SHARED / "images" / "dog.jpg")
    outputs = run(export(net, decode=True), letterbox_image(im, net.w, net.h)[None], [[im.shape[2], im.shape[1]]])
    found = postprocess(outputs["boxes"], outputs["scores"], thresh=0.5, nms=0.45)[0]
    names = (ROOT / "data" / "coco.names").read_text().split("\n")
    printed = sorted((names[c], round(score * 100)) for c, score, _ in found)
    assert printed == sorted([("dog", 57), ("car", 52), ("truck", 56), ("car", 62), ("bicycle", 59)])
    dog = next(box for c, _, box in found if names[c] == "dog")
    assert 0.2 < dog[0] < 0.4 and 0.5 < dog[1] < 0.8     # lower left, relative to the image


def test_postprocess_nms_and_diou():
    boxes = np.array([[[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]], np.float32)
    scores = np.array([[[0.9, 0.0], [0.8, 0.7], [0.6, 0.1]]], np.float32)
    assert [(c, round(s, 2)) for c, s, _ in postprocess(boxes, scores, 0.5, 0.45)[0]] == [(0, 0.9), (1, 0.7), (0, 0.6)]
    assert len(postprocess(boxes, scores, 0.5, 0)[0]) == 4                     # nms 0: none
    assert len(postprocess(boxes, scores, 0.5, 0.9, beta_nms=0.6)[0]) == 4     # DIoU .82 is under .9


# -- hand-written networks: every layer type and option the exporter handles ----------------------------------
EVERY_LAYER = """
[net]
width=32
height=32
channels=3
letter_box=1

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[batchnorm]

[maxpool]
size=3
stride=1

[local_avgpool]
size=3
stride=2

[maxpool]
maxpool_depth=1
out_channels=6

[route]
layers=-2
groups=2
group_id=1

[convolutional]
filters=16
size=3
pad=1
groups=4
dilation=2
activation=mish

[convolutional]
batch_normalize=1
filters=16
size=3
pad=1
groups=16
activation=swish

[shortcut]
from=-3
activation=linear

[shortcut]
from=-4,-2
weights_type=per_channel
weights_normalization=softmax
activation=swish

[shortcut]
from=0
alpha=0.5
beta=2
activation=leaky

[avgpool]

[convolutional]
filters=16
size=1
activation=logistic

[scale_channels]
from=-3

[convolutional]
filters=1
size=1
activation=logistic

[scale_channels]
from=-2
scale_wh=1

[sam]
from=-3

[upsample]
stride=2
scale=0.5

[upsample]
stride=-2

[reorg3d]
stride=2

[reorg]
stride=2

[reorg]
stride=2
reverse=1

[reorg]
flatten=1

[normalization]
size=4
alpha=0.01
beta=0.75
kappa=2

[l2norm]

[activation]
activation=selu

[logistic]

[dropout]

[shortcut]
from=20
activation=relu6

[shortcut]
from=-1,-8
weights_type=per_feature
weights_normalization=relu

[route]
layers=-1,20

[reorg]
extra=5

[route]
layers=18

[convolutional]
filters=27
size=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,5, 8,9, 12,16, 20,22, 26,30, 31,31
classes=4
num=6
scale_x_y=1.1

[route]
layers=-3

[convolutional]
filters=18
size=1
activation=linear

[region]
anchors=1,1, 2,3
classes=4
coords=4
num=2
softmax=1

[route]
layers=-3

[convolutional]
filters=18
size=1
activation=logistic

[yolo]
mask=3,4
anchors=4,5, 8,9, 12,16, 20,22, 26,30, 31,31
classes=4
num=6
new_coords=1
scale_x_y=2
"""

# Every activation (one 1x1 convolution each), a crop, a locally connected layer, softmaxes of every kind, the
# connected layer with batch-norm, YOLOv1's detection layer and a cost layer.
ACTIVATIONS = ["logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu", "loggy", "stair",
               "hardtan", "lhtan", "selu", "relu6", "gelu", "revleaky", "swish", "mish", "hard_mish",
               "normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval"]
CLASSIFIER = "[net]\nwidth=14\nheight=14\nchannels=3\n\n[crop]\ncrop_width=12\ncrop_height=12\n\n" \
    "[local]\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n" + "".join(
        f"[convolutional]\nfilters=6\nsize=1\nactivation={a}\n\n" for a in ACTIVATIONS) + """
[maxpool]
size=2
stride=2

[softmax]
spatial=1

[connected]
output=52
batch_normalize=1
activation=linear

[detection]
classes=3
coords=4
num=2
side=2
softmax=1
sqrt=1

[softmax]
groups=4
temperature=2

[softmax]
tree=tree.txt

[cost]
"""
TREE = "".join(f"n{i} -1\n" for i in range(4)) + "".join(f"m{i} {i // 12}\n" for i in range(48))


def random_network(path, text, seed=0):
    """A network from cfg text with random weights, batch-norm statistics and biases (the fork's shortcut
    weights too), so that every parameter shows in the outputs."""
    path.write_text(text)
    net = Network(path, quiet_unused=True)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        for array in layer.weight_arrays():
            array[...] = rng.uniform(0.5, 1.5, array.shape) if array is getattr(layer, "rolling_variance", None) \
                else rng.normal(0, 0.5, array.shape)
    return net, rng.random((1,) + net.input_shape, dtype=np.float32)


@pytest.mark.parametrize("darknet", ["ab", "pjreddie"])
def test_every_layer_type(tmp_path, darknet):
    """Each layer's output, every one of them a graph output, at both opsets' Reduce* forms; and --decode."""
    (tmp_path / "tree.txt").write_text(TREE)
    nets = [random_network(tmp_path / "every.cfg", EVERY_LAYER),
            random_network(tmp_path / "classifier.cfg", CLASSIFIER)]
    covered = set()
    for net, x in nets:
        net.darknet = darknet
        net.every_output = True   # every layer's output is compared
        net.forward(x)
        covered |= {layer.type for layer in net.layers}
        for opset in (13, 18):
            outputs = run(export(net, opset=opset, layers=range(len(net.layers))), x)
            error, name = worst_output(net, outputs)
            assert error <= TOLERANCE, f"opset {opset}: {name} first of the worst: scaled error {error:.3g}"
        model = export(net, decode=True)
        size = [[40, 30]] if len(model.graph.input) == 2 else None
        outputs = run(model, x, size)
        dets = network_detections(net, 40, 30, -1, relative=True, letterbox=size is not None)
        if net.layers[-1].type == "cost":   # the detection layer's boxes are in pixels
            dets.bbox /= np.float32([40, 30, 40, 30])
        assert scaled_error(outputs["boxes"][0], dets.bbox) <= TOLERANCE
        assert scaled_error(outputs["scores"][0], dets.prob) <= TOLERANCE
    assert covered == set(EXPORTERS)


def test_metadata_and_node_names(tmp_path):
    net, _ = random_network(tmp_path / "every.cfg", EVERY_LAYER)
    meta = {p.key: p.value for p in export(net, names=["a", "b", "c", "d"]).metadata_props}
    assert json.loads(meta["classes"]) == 4 and json.loads(meta["names"]) == ["a", "b", "c", "d"]
    assert json.loads(meta["masks"]) == {"layer_34_yolo": [0, 1, 2], "layer_40_yolo": [3, 4]}
    assert json.loads(meta["anchors"])["layer_37_region"] == [[1, 1], [2, 3]]
    assert [o["name"] for o in json.loads(meta["outputs"])] == ["layer_34_yolo", "layer_37_region", "layer_40_yolo"]
    nodes = {node.name for node in export(net).graph.node}
    assert {f"layer_{layer.index}_{layer.type}" for layer in net.layers} <= nodes


def test_ir_version_is_the_least_the_opset_needs(tmp_path):
    """Runtimes refuse an IR version newer than they know (ONNX Runtime 1.31 refused onnx 1.23's default, 14, on
    an opset-17 graph): the export writes the least its opset needs, whatever onnx package made it."""
    net, _ = random_network(tmp_path / "every.cfg", EVERY_LAYER)
    assert export(net).ir_version == 8                 # opset 17, the default (onnx 1.12's IR)
    assert export(net, opset=13).ir_version == 7


def test_unsupported_layers_and_options_name_the_cfg_line(tmp_path, monkeypatch):
    (tmp_path / "tree.txt").write_text(TREE)
    net, _ = random_network(tmp_path / "classifier.cfg", CLASSIFIER.replace("crop_width=12\ncrop_height=12",
                                                                             "crop_width=16\ncrop_height=16"))
    with pytest.raises(DarknetError, match=r"classifier.cfg:\d+: \[crop\] layer 0: .*fixed --batch"):
        export(net, batch=None)
    export(net, batch=2)   # a fixed batch can read past the input as darknet does
    tree_region = "[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nfilters=114\nsize=1\n" \
        "activation=linear\n\n[region]\nclasses=52\nnum=2\nsoftmax=1\ntree=tree.txt\n"
    net, _ = random_network(tmp_path / "tree.cfg", tree_region)
    with pytest.raises(DarknetError, match=r"tree.cfg:\d+: \[region\] layer 1: --decode of a class tree"):
        export(net, decode=True)
    export(net)   # without --decode: one softmax per group of the tree
    net, _ = random_network(tmp_path / "every.cfg", EVERY_LAYER)
    monkeypatch.delitem(EXPORTERS, "sam")
    with pytest.raises(DarknetError, match=r"every.cfg:\d+: \[sam\] layer 16: \[sam\] layers cannot be exported"):
        export(net)


def test_export_command(tmp_path, capsys):
    cfg, weights = shared_path("cfg", "yolov4-tiny.cfg"), shared_path("models", "yolov4-tiny.weights")
    out = tmp_path / "yolov4-tiny.onnx"
    with pytest.raises(SystemExit) as exit_:
        main(["export", "onnx", str(cfg), str(weights), str(out), "--decode", "--fp16", "--batch", "dynamic",
              "--opset", "18", "--data", str(ROOT / "cfg" / "coco.data")])
    assert exit_.value.code == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 18
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    assert json.loads({p.key: p.value for p in model.metadata_props}["names"])[16] == "dog"
    assert "boxes: batch x 2535 x 4" in capsys.readouterr().err
    types = {tensor.name: tensor.data_type for tensor in model.graph.initializer}
    convolutions = [node for node in model.graph.node if node.op_type == "Conv"]
    assert [types[node.input[1]] for node in convolutions[:2]] == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16]
    with pytest.raises(SystemExit) as exit_:
        main(["export", "onnx", str(cfg), str(weights), str(out), "--batch", "0"])
    assert exit_.value.code == 2
