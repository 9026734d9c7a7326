"""The ASGI application (Starlette): the routes, the limits each request meets before it costs anything, the
answers and errors (`{"error": "..."}` with the status), one log line per request.

Routes: KServe v2 (`/v2/health/live`, `/v2/health/ready`, `/v2`, `/v2/models/NAME[/versions/1]`, `.../ready`,
`.../infer`: v2.py); plain REST (`POST /detect`, `/classify`, `/models/NAME/detect`, `/models/NAME/classify`: the
body an image's bytes or a multipart form with a file field `image`, the options as query parameters, the answer
`detect --json`'s object); `/metrics` (metrics.py); `/openapi.json`.
"""
import asyncio
import hmac
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from starlette.applications import Starlette
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...files.image import ImageError
from ...files.image_header import declared_size
from ...kernels.threads import cores, one_kernel_thread_here
from ..about import version_of
from . import v2
from .batcher import Batcher, Job
from .metrics import ServerMetrics
from .models import BadRequest


class Refused(Exception):
    """A request answered with `status` and `{"error": message}` (and `headers`)."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.headers = status, headers


class ClientGone(Exception):
    """The client disconnected before its answer: nothing is sent."""


class Server:
    """The models (a dict of name to ServedModel, in the order given: the first detector answers /detect, the
    first classifier /classify), each with its Batcher, behind `app`; `ready` false until the models are warm and
    once a stop begins (`draining`: new requests get 503, those in flight are answered)."""

    def __init__(self, models, settings, debug=False):
        self.models, self.settings, self.debug = models, settings, debug
        self.metrics = ServerMetrics()
        # half the cores decode beside the forward (which takes them all): on 2 cores of an Intel Xeon, 16 clients
        # got 0.92-0.97x the offline rate with one decoding thread, 0.88-0.96x with two
        self.decoding = ThreadPoolExecutor(max(1, cores() // 2), thread_name_prefix="serve-decode")
        self.batchers = {name: Batcher(model, settings, self.metrics) for name, model in models.items()}
        self.ready = False
        self.draining = False
        self.in_flight = 0
        self.app = Starlette(routes=self.routes())
        self.app.add_middleware(RequestLog, server=self)
        self.app.add_middleware(Counted, server=self)

    def close(self):
        for batcher in self.batchers.values():
            batcher.close()
        self.decoding.shutdown()

    def routes(self):
        model = "/v2/models/{name}"
        routes = [Route("/v2/health/live", self.live), Route("/v2/health/ready", self.ready_route),
                  Route("/v2", self.server_metadata), Route("/metrics", self.metrics_route),
                  Route("/openapi.json", self.openapi)]
        for base in (model, model + "/versions/{version}"):
            routes += [Route(base, self.model_metadata), Route(base + "/ready", self.model_ready),
                       Route(base + "/infer", self.infer, methods=["POST"])]
        for kind, verb in (("detector", "detect"), ("classifier", "classify")):
            routes += [Route(f"/{verb}", self.rest(kind), methods=["POST"]),
                       Route(f"/models/{{name}}/{verb}", self.rest(kind), methods=["POST"])]
        return [Route(r.path, answering(self, r.endpoint, r.path.startswith("/v2/health")), methods=r.methods)
                for r in routes]

    # health and metadata

    async def live(self, request):
        return Response(status_code=200)

    async def ready_route(self, request):
        return Response(status_code=200 if self.ready and not self.draining else 503)

    async def server_metadata(self, request):
        return JSONResponse({"name": "pydarknet", "version": version_of("pydarknet"),
                             "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request):
        return JSONResponse(v2.metadata(self.model(request)))

    async def model_ready(self, request):
        self.model(request)
        return Response(status_code=200 if self.ready and not self.draining else 503)

    async def metrics_route(self, request):
        body, content_type = self.metrics.exposition()
        return Response(body, headers={"content-type": content_type})

    async def openapi(self, request):
        from .openapi import document
        return JSONResponse(document(self.models))

    def model(self, request, kind=None):
        """The model a route names (404 when none is served), checked to be a `kind`; with no name in the route,
        the first model of that kind."""
        name = request.path_params.get("name")
        if name is None:
            name = next((n for n, m in self.models.items() if m.kind == kind), None)
            if name is None:
                raise Refused(404, f"no {kind} is served here: the models are {', '.join(self.models)}")
        elif name not in self.models:
            raise Refused(404, f"unknown model {name!r}: the models are {', '.join(self.models)}")
        version = request.path_params.get("version")
        if version not in (None, "1"):
            raise Refused(404, f"model {name!r} has one version, 1, not {version!r}")
        model = self.models[name]
        if kind is not None and model.kind != kind:
            raise Refused(404, f"model {name!r} is a {model.kind}, not a {kind}")
        request.scope["model"] = name
        return model

    # inference

    async def infer(self, request):
        model = self.model(request)
        body = await read_body(request, self.settings.max_body)
        parsed = v2.parse_request(body, request.headers.get("inference-header-content-length"), model)
        options = model.options(parsed.parameters)
        results = await self.results(request, model, parsed.images, options)
        content, headers = v2.encode_response(parsed, model, model.tensors(results))
        return Response(content, headers=headers)

    def rest(self, kind):
        async def route(request):
            model = self.model(request, kind)
            options = model.options(request.query_params)
            image = await rest_image(request, self.settings.max_body)
            result, = await self.results(request, model, [image], options)
            return JSONResponse(model.answer(result))
        return route

    async def results(self, request, model, images, options):
        """The results of a request's images ((name, bytes)): each checked (its declared size), decoded and sized in
        the decoding threads, queued for the model's worker; a Refused for what fails on the way."""
        if self.draining or not self.ready:
            raise Refused(503, "the server is stopping: send the request to another replica",
                          {"retry-after": "1"})
        if len(images) > self.settings.max_batch:
            raise Refused(400, f"{len(images)} images in one request: this server takes at most "
                               f"{self.settings.max_batch} (--max-batch)")
        started = time.perf_counter()
        try:
            for name, data in images:
                check_size(data, name, self.settings.max_pixels)
            loop = asyncio.get_running_loop()
            if self.batchers[model.name].idle:   # decoded by the worker, on its kernel threads, as detect does
                prepared = [partial(model.prepare, data, name, options) for name, data in images]
            else:   # decoded beside the forward, a thread each (see decode)
                prepared = await asyncio.gather(*[loop.run_in_executor(self.decoding, decode, model, data, name,
                                                                       options) for name, data in images])
            jobs = [Job(p, options, loop.create_future(), loop) for p in prepared]
            if not self.batchers[model.name].submit(jobs):
                raise Refused(503, f"model {model.name}'s queue is full ({self.settings.max_queue} images, "
                                   "--max-queue): try again shortly", {"retry-after": "1"})
            left = self.settings.timeout - (time.perf_counter() - started)
            return await answers(request, jobs, left, self.settings.timeout)
        except ImageError as e:
            raise Refused(400, str(e)) from None


async def answers(request, jobs, left, timeout):
    """The jobs' results once all are done; a Refused (504) past `left` seconds, a ClientGone when the client
    disconnects first: either way the jobs not yet run are dropped."""
    everything = asyncio.gather(*[job.future for job in jobs])
    gone = asyncio.ensure_future(request.receive())
    try:
        done, _ = await asyncio.wait([everything, gone], timeout=max(left, 0),
                                     return_when=asyncio.FIRST_COMPLETED)
        if everything in done:
            return everything.result()
        for job in jobs:
            job.dropped = True
        everything.cancel()
        if gone in done:
            raise ClientGone()
        raise Refused(504, f"no answer within --timeout {timeout:g} s: the server is busier than it can answer")
    finally:
        gone.cancel()


def decode(model, data, name, options):
    """model.prepare in a decoding thread, beside the worker's forward pass: its kernels on this thread alone (a
    kernel team of its own would share the cores with the forward's, whose threads then wait at every layer)."""
    one_kernel_thread_here()
    return model.prepare(data, name, options)


def check_size(data, name, max_pixels):
    """400 for bytes that are not an image this server decodes, or one that declares more than max_pixels."""
    width, height = declared_size(data, name)
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width} x {height} pixels, more than --max-pixels {max_pixels}")
    if width * height == 0:
        raise ImageError(f"{name}: {width} x {height} pixels: an empty image")


async def read_body(request, limit):
    """The request's body, refused with 413 before it is read when its declared length is over `limit`, or as soon
    as what has come is."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, f"a body of {declared} bytes: this server takes at most {limit} (--max-body)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"a body of more than {limit} bytes (--max-body)")
        chunks.append(chunk)
    return b"".join(chunks)


async def rest_image(request, limit):
    """(name, bytes) of a REST request's image: the body, or a multipart form's file field `image` (named by its
    file name)."""
    body = await read_body(request, limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return "image", body

    async def stream():
        yield body
    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=16).parse()
    except MultiPartException as e:
        raise Refused(400, f"a malformed multipart form: {e.message}") from None
    field = form.get("image")
    if field is None or isinstance(field, str):
        raise Refused(400, "the multipart form needs a file field named image (curl -F image=@dog.jpg)")
    return field.filename or "image", await field.read()


def answering(server, endpoint, open_route):
    """The endpoint with the API key checked (but on the health routes), and what it raises turned into the
    answer: a Refused or BadRequest its status, a ClientGone nothing, anything else 500 (its traceback under
    --debug)."""
    key = server.settings.api_key

    async def route(request):
        outcome = "rejected"
        try:
            if key is not None and not open_route:
                given = request.headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
                    raise Refused(401, "this server needs `Authorization: Bearer KEY` (--api-key)",
                                  {"www-authenticate": "Bearer"})
            response = await endpoint(request)
            outcome = "success"
            return response
        except Refused as e:
            return JSONResponse({"error": str(e)}, e.status, e.headers)
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, 400)
        except (ClientGone, ClientDisconnect):
            return Response(status_code=499)   # never sent: the client has gone
        except Exception as e:
            outcome = "failed"
            if server.debug:
                import traceback
                traceback.print_exc()
            return JSONResponse({"error": f"the server failed: {type(e).__name__}: {e}"}, 500)
        finally:
            if request.scope.get("model") is not None and request.method == "POST":
                server.metrics.requests.labels(request.scope["model"], outcome).inc()
    return route


class Counted:
    """ASGI middleware: `server.in_flight` counts the HTTP requests from their arrival until their answer's last
    byte is handed to the connection, so that a stop drains what clients still wait for (an endpoint that has
    returned has not yet been answered)."""

    def __init__(self, app, server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.server.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.server.in_flight -= 1


class RequestLog:
    """ASGI middleware: one line on stderr per request, method, path, model, status, milliseconds."""

    def __init__(self, app, server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.server.settings.log_requests:
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [499]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, sending)
        finally:
            print(f"{scope['method']} {scope['path']} {scope.get('model', '-')} {status[0]} "
                  f"{(time.perf_counter() - started) * 1000:.1f} ms", file=sys.stderr, flush=True)

