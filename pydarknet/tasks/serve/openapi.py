"""The OpenAPI description of the server's REST routes (/openapi.json), for browsers, generators and testers.
The v2 routes are KServe's, described by its own specification."""
from ..about import version_of
from .models import PARAMETERS

IMAGE_BODY = {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                       "properties": {"image": {"type": "string", "format": "binary"}}}}}}
ERROR = {"description": "the error, in one line", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}}}}}
QUERY_TYPES = {"thresh": "number", "hier_thresh": "number", "nms": "number", "letter_box": "boolean",
               "top": "integer"}
ANSWERS = {"detector": "the image's `pydarknet detect --json` object: image, seconds, width, height, detections",
           "classifier": "the image's `pydarknet classify --json` object: image, seconds, predictions"}


def operation(kind, verb, named):
    parameters = [{"name": key, "in": "query", "required": False, "schema": {"type": QUERY_TYPES[key]}}
                  for key in PARAMETERS[kind]]
    if named:
        parameters.insert(0, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}})
    return {"post": {"summary": f"{verb.capitalize()} one image with " + ("the model named" if named else
                                                                          f"the first {kind} served"),
                     "parameters": parameters, "requestBody": IMAGE_BODY,
                     "responses": {"200": {"description": ANSWERS[kind],
                                           "content": {"application/json": {"schema": {"type": "object"}}}},
                                   **{status: ERROR for status in ("400", "401", "404", "413", "503", "504")}}}}


def document(models):
    """The OpenAPI 3 document; `models` (name to ServedModel) name the served models in its description."""
    paths = {}
    for kind, verb in (("detector", "detect"), ("classifier", "classify")):
        paths[f"/{verb}"] = operation(kind, verb, False)
        paths[f"/models/{{name}}/{verb}"] = operation(kind, verb, True)
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}}
    served = ", ".join(f"{name} ({model.kind})" for name, model in models.items())
    return {"openapi": "3.0.3", "info": {"title": "pydarknet serve", "version": version_of("pydarknet"),
                                         "description": f"Models: {served}. KServe v2 routes under /v2."},
            "paths": paths}
