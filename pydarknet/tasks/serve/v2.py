"""The KServe v2 inference protocol (the Open Inference Protocol) over HTTP, as Triton and OpenVINO Model Server
speak it, with Triton's binary tensor data extension, which its clients (`tritonclient.http`) use by default.

A request is JSON, or JSON followed by the tensors' bytes (`Inference-Header-Content-Length` gives the JSON's
length; each input with a `binary_data_size` parameter takes that many bytes, in the order the JSON lists them); a
header length of 0 makes the whole body the one image. The input `image` is BYTES, any shape of n elements, each
an encoded image: in binary, a 4-byte little-endian length and the bytes; in JSON, a base64 string (as OpenVINO
Model Server takes binary data in JSON). Outputs come in binary or JSON as each requested output's `binary_data`
parameter asks (else the request's `binary_data_output`, else JSON).
"""
import base64
import binascii
import json
import struct
from dataclasses import dataclass

import numpy as np

from ...results.output import strict_json
from .models import BadRequest

INPUT = "image"
DATATYPES = {"BYTES": np.object_, "FP32": np.float32, "INT32": np.int32}


@dataclass
class InferRequest:
    """A parsed v2 request: its id, its images ((name, bytes)), its parameters, the outputs asked for as
    {name: binary (True, False, or None for the request's default)} (empty: all), and that default."""
    id: str
    images: list
    parameters: dict
    outputs: dict
    binary_default: bool


def parse_request(body, header_length, model):
    """The InferRequest of a request's body and its Inference-Header-Content-Length header (None when absent); a
    BadRequest naming what breaks the protocol."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequest(f"Inference-Header-Content-Length {header_length!r}: give the JSON header's length in "
                             f"bytes, at most the body's {len(body)}")
        if int(header_length) == 0:
            return InferRequest("", [(INPUT, body)], {}, {}, False)
        header, binary = body[:int(header_length)], body[int(header_length):]
    else:
        header, binary = body, b""
    try:
        doc = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"the request's JSON header is malformed: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequest('the request needs an "inputs" list (the v2 inference request)')
    parameters = _object(doc.get("parameters", {}), "parameters")
    images, used = None, 0
    for tensor in doc["inputs"]:
        tensor = _object(tensor, "an input")
        if tensor.get("name") != INPUT:
            raise BadRequest(f"unknown input {tensor.get('name')!r}: model {model.name} takes one input, "
                             f"{INPUT!r} (BYTES, encoded images)")
        if tensor.get("datatype") != "BYTES":
            raise BadRequest(f"input {INPUT!r} is BYTES (encoded images), not {tensor.get('datatype')!r}")
        count = _elements(tensor.get("shape"))
        size = _object(tensor.get("parameters", {}), "an input's parameters").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or used + size > len(binary):
                raise BadRequest(f"input {INPUT!r}: binary_data_size {size!r} past the body's binary data")
            elements = _binary_elements(binary[used:used + size])
            used += size
        elif "data" in tensor:
            elements = [_base64(value) for value in _flat(tensor["data"])]
        else:
            raise BadRequest(f"input {INPUT!r} has neither data nor a binary_data_size parameter")
        if len(elements) != count:
            raise BadRequest(f"input {INPUT!r}: shape {tensor.get('shape')} holds {count} elements, the data "
                             f"{len(elements)}")
        images = [(f"{INPUT}[{index}]", element) for index, element in enumerate(elements)]
    if images is None:
        raise BadRequest(f"no input {INPUT!r}: give the images as a BYTES tensor named {INPUT!r}")
    if used != len(binary):
        raise BadRequest(f"{len(binary) - used} bytes of binary data that no input's binary_data_size claims")
    outputs = {}
    for tensor in doc.get("outputs") or []:
        tensor = _object(tensor, "an output")
        if tensor.get("name") not in model.outputs():
            raise BadRequest(f"unknown output {tensor.get('name')!r}: model {model.name} gives "
                             f"{', '.join(model.outputs())}")
        outputs[tensor["name"]] = _object(tensor.get("parameters", {}), "an output's parameters").get("binary_data")
    return InferRequest(str(doc.get("id", "")), images, parameters, outputs,
                        bool(parameters.get("binary_data_output", False)))


def encode_response(request, model, tensors):
    """(body, headers) of the answer: the JSON header, then the binary outputs' bytes."""
    wanted = request.outputs or dict.fromkeys(tensors)
    described, chunks = [], []
    for name, binary in wanted.items():
        datatype, _ = model.outputs()[name]
        value = tensors[name]
        entry = {"name": name, "datatype": datatype, "shape": list(value.shape)}
        if request.binary_default if binary is None else binary:
            data = (b"".join(struct.pack("<I", len(e)) + e for e in value.ravel()) if datatype == "BYTES"
                    else np.ascontiguousarray(value, DATATYPES[datatype]).tobytes())
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = ([e.decode() for e in value.ravel()] if datatype == "BYTES"
                             else strict_json(value.ravel().tolist()))
        described.append(entry)
    header = json.dumps({"model_name": model.name, "model_version": "1", "id": request.id,
                         "outputs": described}, allow_nan=False).encode()
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {"content-type": "application/octet-stream",
                                       "inference-header-content-length": str(len(header))}


def metadata(model):
    """The model's v2 metadata."""
    return {"name": model.name, "versions": ["1"], "platform": f"pydarknet_{model.kind}",
            "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": name, "datatype": datatype, "shape": shape}
                        for name, (datatype, shape) in model.outputs().items()]}


def _object(value, what):
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _elements(shape):
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"input {INPUT!r}: shape {shape!r} is not a list of sizes")
    return int(np.prod(shape, dtype=np.int64))


def _flat(data):
    if isinstance(data, list):
        return [value for item in data for value in _flat(item)]
    return [data]


def _base64(value):
    if not isinstance(value, str):
        raise BadRequest(f"input {INPUT!r} in JSON: each element a base64 string of an image's bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"input {INPUT!r} in JSON: an element is not base64 (send an image's bytes base64 "
                         "encoded, or in binary)") from None


def _binary_elements(data):
    """BYTES elements in binary: each a 4-byte little-endian length, then that many bytes."""
    elements, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise BadRequest(f"input {INPUT!r}: binary data ends inside an element's 4-byte length")
        size = struct.unpack_from("<I", data, pos)[0]
        if pos + 4 + size > len(data):
            raise BadRequest(f"input {INPUT!r}: an element of {size} bytes runs past its binary data")
        elements.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return elements
