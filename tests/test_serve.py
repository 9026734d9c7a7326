"""`pydarknet serve` as users meet it: a real server process on a free loopback port, driven by Triton's own client
(`tritonclient.http`), curl and raw sockets, every wait bounded. Its answers are `detect --json`'s on the same
images; every limit and fault of the issue (body, pixels, queue, timeout, disconnects, API key, stop signals) is
answered as the README says, and the server is still ready after each."""
import base64
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import ROOT, takes_ctrl_c
from test_stops import DEADLINE, ENV

http = pytest.importorskip("tritonclient.http", reason="the serve tests need the test extra's tritonclient[http]")
pytest.importorskip("uvicorn", reason="pydarknet serve needs the serve extra (pip install 'pydarknet[serve]')")

SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-v4tiny.cfg"), str(ROOT / "data/shapes-v4tiny.weights")]
MODEL = "shapes-v4tiny"
IMAGES = [ROOT / "data/shapes.jpg", ROOT / "data/dog.jpg", ROOT / "data/person.jpg"]
READY = re.compile(r"pydarknet serve: ready on (http://\S+) ")
CURL = shutil.which("curl")


class Served:
    """A `pydarknet serve` process and its address; its stderr (one line per request) is collected."""

    def __init__(self, *args, folder=ROOT):
        self.process = subprocess.Popen([sys.executable, "-m", "pydarknet", "serve", "--port", "0", *map(str, args)],
                                        cwd=folder, env=ENV, text=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, preexec_fn=takes_ctrl_c)
        self.log = []
        threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True).start()
        ready = self._ready_line()
        self.url = READY.match(ready).group(1)
        self.address = self.url.removeprefix("http://")

    def _ready_line(self):
        found = []
        reader = threading.Thread(target=lambda: found.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(DEADLINE)
        assert found and READY.match(found[0]), f"no ready line: {found} {self.log[-5:]}"
        return found[0]

    def client(self):
        return http.InferenceServerClient(self.address, connection_timeout=DEADLINE, network_timeout=DEADLINE)

    def stop(self, number=signal.SIGTERM):
        self.process.send_signal(number)
        try:
            return self.process.wait(DEADLINE)
        finally:
            self.process.kill()


def request(url, data=None, headers=(), method=None):
    """(status, headers, body) of one HTTP request with the standard library."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, data=data, headers=dict(headers), method=method)
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def error_of(body):
    return json.loads(body)["error"]


def curl(*args):
    if CURL is None:
        pytest.skip("curl is not installed")
    done = subprocess.run([CURL, "-sS", "--max-time", str(DEADLINE), *args], capture_output=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    return done.stdout


def without_timing(doc):
    """`detect --json`'s object without what differs between runs (the seconds) and the image's name."""
    return {key: value for key, value in doc.items() if key not in ("seconds", "image")}


@pytest.fixture(scope="module")
def expected():
    """`detect --json`'s objects for IMAGES, by the command line."""
    done = subprocess.run([sys.executable, "-m", "pydarknet", "detector", "test", *SHAPES, *map(str, IMAGES),
                           "--json", "-q", "-dont_show"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    return [without_timing(json.loads(line)) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def server(small_classifier):
    """The shapes detector (exact), the same network in --fast's products, and a small classifier; batches formed
    by waiting up to 150 ms."""
    data, cfg, weights = small_classifier
    served = Served(*SHAPES, "--model", f"shapes-fast:fast={','.join(SHAPES)}",
                    "--model", f"small={data},{cfg},{weights}", "--max-batch", "4", "--max-delay-ms", "150",
                    "--max-body", "1M", "--max-pixels", "4000000")
    yield served
    assert served.stop() == 0, served.log[-5:]


def infer_input(images):
    tensor = http.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array([path.read_bytes() for path in images], dtype=object))
    return tensor


def test_health_and_metadata_through_tritonclient(server):
    client = server.client()
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert not client.is_model_ready("no-such-model")
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = client.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {
        "detections": [-1], "boxes": [-1, -1, 4], "scores": [-1, -1], "classes": [-1, -1], "counts": [-1]}
    assert client.get_model_metadata("small")["outputs"][1] == {"name": "probabilities", "datatype": "FP32",
                                                                "shape": [-1, 3]}


def test_binary_infer_answers_what_detect_json_writes(server, expected):
    """tritonclient's default (BYTES in binary, outputs in binary): three images in one request."""
    result = server.client().infer(MODEL, [infer_input(IMAGES)])
    answers = [json.loads(text) for text in result.as_numpy("detections")]
    assert [without_timing(a) for a in answers] == expected
    counts = result.as_numpy("counts")
    assert counts.tolist() == [len(e["detections"]) for e in expected]
    for row, e in enumerate(expected):
        pixels = [[d["pixels"][k] for k in ("left", "top", "width", "height")] for d in e["detections"]]
        assert result.as_numpy("boxes")[row, :counts[row]].tolist() == pixels
        assert result.as_numpy("scores")[row, :counts[row]].tolist() == [np.float32(d["prob"]) for d in e["detections"]]
        assert result.as_numpy("classes")[row].tolist() == ([d["class_id"] for d in e["detections"]]
                                                            + [-1] * (max(counts) - counts[row]))


def test_json_infer_with_base64_images_and_parameters(server, expected):
    """The v2 request in plain JSON (images base64, as OpenVINO Model Server takes binary in JSON), outputs asked
    in JSON, a threshold among the parameters."""
    doc = {"id": "7", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1],
                                  "data": [base64.b64encode(IMAGES[0].read_bytes()).decode()]}],
           "outputs": [{"name": "detections"}, {"name": "scores"}], "parameters": {"thresh": 0.5}}
    status, headers, body = request(f"{server.url}/v2/models/{MODEL}/infer", json.dumps(doc).encode())
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["id"] == "7" and [o["name"] for o in answer["outputs"]] == ["detections", "scores"]
    found = json.loads(answer["outputs"][0]["data"][0])
    assert found["detections"] == [d for d in expected[0]["detections"] if d["prob"] > 0.5]
    assert answer["outputs"][1]["data"] == [d["prob"] for d in found["detections"]]


def test_a_bare_body_with_a_header_length_of_zero_is_the_one_image(server, expected):
    status, _, body = request(f"{server.url}/v2/models/{MODEL}/infer", IMAGES[1].read_bytes(),
                              {"Inference-Header-Content-Length": "0"})
    assert status == 200
    detections = json.loads(body)["outputs"][0]
    assert detections["name"] == "detections" and without_timing(json.loads(detections["data"][0])) == expected[1]


def test_rest_detect_with_curl_raw_and_multipart(server, expected):
    raw = json.loads(curl("--data-binary", f"@{IMAGES[0]}", f"{server.url}/detect"))
    form = json.loads(curl("-F", f"image=@{IMAGES[2]}", f"{server.url}/models/{MODEL}/detect"))
    assert without_timing(raw) == expected[0] and without_timing(form) == expected[2]
    assert form["image"] == IMAGES[2].name
    lowered = json.loads(curl("--data-binary", f"@{IMAGES[0]}", f"{server.url}/detect?thresh=0.9"))
    assert lowered["detections"] == [d for d in expected[0]["detections"] if d["prob"] > 0.9]


def test_rest_classify_answers_what_classify_json_writes(server, small_classifier):
    done = subprocess.run([sys.executable, "-m", "pydarknet", "classifier", "predict", *small_classifier,
                           str(IMAGES[1]), "--json", "-q"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    wanted = json.loads(done.stdout)
    answer = json.loads(curl("--data-binary", f"@{IMAGES[1]}", f"{server.url}/classify"))
    assert answer["predictions"] == wanted["predictions"] and len(answer["predictions"]) == 3   # the .data's top=3
    one = json.loads(curl("--data-binary", f"@{IMAGES[1]}", f"{server.url}/models/small/classify?top=1"))
    assert one["predictions"] == wanted["predictions"][:1]
    result = server.client().infer("small", [infer_input(IMAGES[1:2])])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (1, 3)
    assert sorted(probabilities[0].tolist(), reverse=True) == [np.float32(p["prob"]) for p in wanted["predictions"]]


def test_models_of_two_precisions_side_by_side(server, expected):
    """The exact model answers darknet's numbers after the --fast one has run, and the --fast one is within its
    tolerance (issue 51, item 6: each model has its own products)."""
    fast = json.loads(curl("--data-binary", f"@{IMAGES[0]}", f"{server.url}/models/shapes-fast/detect"))
    exact = json.loads(curl("--data-binary", f"@{IMAGES[0]}", f"{server.url}/models/{MODEL}/detect"))
    assert without_timing(exact) == expected[0]
    assert [d["class_id"] for d in fast["detections"]] == [d["class_id"] for d in expected[0]["detections"]]
    assert np.allclose([d["prob"] for d in fast["detections"]], [d["prob"] for d in expected[0]["detections"]],
                       atol=1e-3)


def test_concurrent_requests_share_forward_passes_with_the_answers_they_get_alone(server, expected):
    before = metric_values(server, "pydarknet_forwards_total", "pydarknet_images_total")
    answers = [None] * 4

    def ask(index):
        answers[index] = json.loads(request(f"{server.url}/models/{MODEL}/detect", IMAGES[index % 3].read_bytes())[2])
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert [without_timing(a) for a in answers] == [expected[i % 3] for i in range(4)]
    after = metric_values(server, "pydarknet_forwards_total", "pydarknet_images_total")
    forwards, images = (after[key] - before[key] for key in ("pydarknet_forwards_total", "pydarknet_images_total"))
    assert images == 4 and forwards < 4   # batched: fewer passes than images


def metric_values(server, *names, model=MODEL):
    """The named metrics of `model` from /metrics (Prometheus's text format)."""
    status, _, body = request(f"{server.url}/metrics")
    assert status == 200
    values = {}
    for line in body.decode().splitlines():
        for name in names:
            if line.startswith(f'{name}{{model="{model}"}}'):
                values[name] = float(line.split()[-1])
    return values


def test_metrics_count_the_requests_by_outcome(server):
    def outcomes():
        status, _, body = request(f"{server.url}/metrics")
        found = dict(re.findall(rf'pydarknet_requests_total{{model="{MODEL}",outcome="(\w+)"}} (\S+)', body.decode()))
        return {key: float(value) for key, value in found.items()}
    before = outcomes()
    request(f"{server.url}/detect", IMAGES[0].read_bytes())
    request(f"{server.url}/detect", IMAGES[0].read_bytes())
    request(f"{server.url}/detect", b"not an image")
    after = outcomes()
    assert after.get("success", 0) - before.get("success", 0) == 2
    assert after.get("rejected", 0) - before.get("rejected", 0) == 1
    status, _, body = request(f"{server.url}/metrics")
    assert "pydarknet_forward_seconds_bucket" in body.decode() and "pydarknet_images_pending" in body.decode()


def big_png_header(width, height):
    """The first bytes of a PNG declaring width x height pixels (its IHDR chunk), nothing after."""
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


@pytest.mark.parametrize("body, headers, status, says", [
    pytest.param(b"hello, world", {}, 400, "not an image", id="not-an-image"),
    pytest.param(IMAGES[0].read_bytes()[:3000], {}, 400, "truncated JPEG", id="truncated-jpeg"),
    pytest.param(big_png_header(30000, 30000), {}, 400, "--max-pixels", id="too-many-pixels"),
    pytest.param(big_png_header(64, 48), {}, 400, "cannot load image", id="a-header-and-no-pixels"),
    pytest.param(b'{"inputs": [', {"Inference-Header-Content-Length": "12"}, 400, "malformed", id="malformed-json"),
    pytest.param(b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], '
                 b'"parameters": {"binary_data_size": 999}}]}', {}, 400, "binary_data_size", id="protocol-broken"),
    pytest.param(b'{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [1]}]}', {}, 400,
                 "unknown input", id="unknown-input"),
])
def test_bad_requests_get_their_status_and_one_line(server, body, headers, status, says):
    route = "/v2/models/shapes-v4tiny/infer" if body.startswith(b"{") else "/detect"
    got, _, answer = request(f"{server.url}{route}", body, headers)
    assert got == status and says in error_of(answer)
    assert request(f"{server.url}/v2/health/ready")[0] == 200


def test_unknown_model_and_parameters(server):
    got, _, answer = request(f"{server.url}/v2/models/yolo9000/infer", b"{}")
    assert got == 404 and "unknown model 'yolo9000'" in error_of(answer)
    got, _, answer = request(f"{server.url}/detect?treshold=0.3", IMAGES[0].read_bytes())
    assert got == 400 and "unknown parameter 'treshold'" in error_of(answer)
    got, _, answer = request(f"{server.url}/detect?thresh=1.5", IMAGES[0].read_bytes())
    assert got == 400 and "thresh" in error_of(answer)
    got, _, answer = request(f"{server.url}/models/small/detect", IMAGES[0].read_bytes())
    assert got == 404 and "classifier" in error_of(answer)


def raw_answer(s):
    """An HTTP answer read off socket `s`: its head, then as many bytes as its content-length says."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += s.recv(4096)
    head, body = answer.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        body += s.recv(4096)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("start", [
    pytest.param(b"Content-Length: 500000000\r\n\r\n" + b"x" * 1000, id="declared"),
    pytest.param(b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (1 << 20 | 10) + b"x" * (1 << 20 | 10),
                 id="chunked"),
])
def test_a_body_over_the_limit_is_refused_before_it_is_all_sent(server, start):
    """A body over --max-body (1M here): 413 as soon as its declared length, or what has come, is over; the rest
    never read (a 500 MB body's first kilobyte is all it takes)."""
    host, port = server.address.split(":")
    with socket.create_connection((host, int(port)), timeout=DEADLINE) as s:
        s.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\n" + start)
        answer = raw_answer(s)
    assert answer.startswith(b"HTTP/1.1 413") and b"--max-body" in answer
    assert request(f"{server.url}/v2/health/ready")[0] == 200


def test_clients_that_disconnect_mid_request_cost_nothing(server, expected):
    host, port = server.address.split(":")
    for cut in (b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"\xff\xd8" * 100,
                b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Len"):
        with socket.create_connection((host, int(port)), timeout=DEADLINE) as s:
            s.sendall(cut)
    with socket.create_connection((host, int(port)), timeout=DEADLINE) as s:   # gone while its image waits
        data = IMAGES[0].read_bytes()
        s.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    status, _, body = request(f"{server.url}/detect", IMAGES[0].read_bytes())
    assert status == 200 and without_timing(json.loads(body)) == expected[0]


def test_openapi_describes_the_rest_routes(server):
    status, _, body = request(f"{server.url}/openapi.json")
    doc = json.loads(body)
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {"/detect", "/classify", "/models/{name}/detect", "/models/{name}/classify"} <= set(doc["paths"])
    assert [p["name"] for p in doc["paths"]["/detect"]["post"]["parameters"]] == ["thresh", "hier_thresh", "nms",
                                                                                   "letter_box"]


def test_a_full_queue_is_refused_at_once_and_a_late_answer_times_out():
    """--max-queue 2 with batches waiting 4 s for more: a third image is refused with 503 and Retry-After at once;
    the first request, past --timeout 1.5, gets 504. The server is ready after both."""
    served = Served(*SHAPES, "--max-batch", "4", "--max-delay-ms", "4000", "--max-queue", "2", "--timeout", "1.5")
    try:
        outcome = {}
        first = threading.Thread(target=lambda: outcome.update(
            first=request(f"{served.url}/v2/models/{MODEL}/infer", IMAGES[0].read_bytes(),
                          {"Inference-Header-Content-Length": "0"})))
        first.start()
        deadline = time.monotonic() + DEADLINE
        while metric_values(served, "pydarknet_images_pending").get("pydarknet_images_pending", 0) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        status, headers, body = request(f"{served.url}/v2/models/{MODEL}/infer", json.dumps({"inputs": [{
            "name": "image", "datatype": "BYTES", "shape": [2],
            "data": [base64.b64encode(IMAGES[0].read_bytes()).decode()] * 2}]}).encode())
        assert status == 503 and headers["retry-after"] == "1" and "queue is full" in error_of(body)
        assert time.monotonic() - started < 1
        first.join(DEADLINE)
        status, _, body = outcome["first"]
        assert status == 504 and "--timeout" in error_of(body)
        assert request(f"{served.url}/v2/health/ready")[0] == 200
    finally:
        assert served.stop() == 0


def test_an_api_key_guards_every_route_but_health():
    served = Served(*SHAPES, "--api-key", "s3cret")
    try:
        assert request(f"{served.url}/v2/health/live")[0] == 200
        status, headers, body = request(f"{served.url}/detect", IMAGES[0].read_bytes())
        assert status == 401 and headers["www-authenticate"] == "Bearer" and "--api-key" in error_of(body)
        assert request(f"{served.url}/metrics", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(f"{served.url}/detect", IMAGES[0].read_bytes(), {"Authorization": "Bearer s3cret"})[0] == 200
        client = http.InferenceServerClient(served.address)
        assert client.get_model_metadata(MODEL, headers={"Authorization": "Bearer s3cret"})["name"] == MODEL
    finally:
        assert served.stop() == 0


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_answers_the_requests_in_flight_then_exits_0(number, expected):
    """A request waiting in its batch when the signal comes is answered; meanwhile readiness is false and new
    requests get 503; then the process exits 0."""
    served = Served(*SHAPES, "--max-batch", "4", "--max-delay-ms", "3000")
    outcome = {}
    waiting = threading.Thread(target=lambda: outcome.update(
        answer=request(f"{served.url}/detect", IMAGES[0].read_bytes())))
    waiting.start()
    deadline = time.monotonic() + DEADLINE
    while metric_values(served, "pydarknet_images_pending").get("pydarknet_images_pending", 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    served.process.send_signal(number)
    while request(f"{served.url}/v2/health/ready")[0] != 503:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    status, _, body = request(f"{served.url}/detect", IMAGES[0].read_bytes())
    assert status == 503 and "stopping" in error_of(body)
    waiting.join(DEADLINE)
    assert outcome["answer"][0] == 200 and without_timing(json.loads(outcome["answer"][2])) == expected[0]
    assert served.process.wait(DEADLINE) == 0
    assert any("stopped" in line for line in served.log)


def test_a_request_is_in_flight_until_its_answer_is_sent():
    """What a stop drains: a request counts from its arrival until the last byte of its answer is handed to the
    connection, not only while its endpoint runs (a stop that waited for the endpoints alone closed connections
    whose answers were not yet sent)."""
    import asyncio

    from pydarknet.tasks.serve.app import Server
    from pydarknet.tasks.serve.settings import ServeSettings
    server = Server({}, ServeSettings(log_requests=False))
    counts = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        counts.append((message["type"], server.in_flight))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/v2/health/live", "raw_path": b"/v2/health/live", "root_path": "", "query_string": b"",
             "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080)}
    try:
        asyncio.run(server.app(scope, receive, send))
    finally:
        server.close()
    assert counts == [("http.response.start", 1), ("http.response.body", 1)] and server.in_flight == 0


def test_the_request_log_has_one_line_per_request(server):
    count = len(server.log)
    request(f"{server.url}/detect", IMAGES[0].read_bytes())
    deadline = time.monotonic() + DEADLINE
    while len(server.log) == count:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert re.fullmatch(rf"POST /detect {MODEL} 200 \d+\.\d ms\n", server.log[-1])


@pytest.mark.parametrize("args, says", [
    (["--port", "70000", *SHAPES], "--port 70000"),
    ([], "nothing to serve"),
    (["--model", "a=" + ",".join(SHAPES[1:]), "--model", "a=" + ",".join(SHAPES[1:])], "two models named a"),
    (["--model", "b:huge=" + ",".join(SHAPES[1:])], "unknown precision 'huge'"),
])
def test_bad_command_lines_get_one_line(args, says):
    done = subprocess.run([sys.executable, "-m", "pydarknet", "serve", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode != 0
    assert done.stderr.startswith("pydarknet: error:") and says in done.stderr and "Traceback" not in done.stderr


def test_a_port_in_use_is_one_line(server):
    port = server.address.split(":")[1]
    done = subprocess.run([sys.executable, "-m", "pydarknet", "serve", "--port", port, *SHAPES], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
