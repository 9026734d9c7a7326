"""`make bench-serve`: `pydarknet serve` under 1, 4 and 16 concurrent clients on the loopback, beside the offline
throughput of `Detector.detect_batch` on the same images, same machine, same run.

The server is a real `pydarknet serve` process (yolov4-tiny, darknet's exact products, the default settings); each
client is a thread with its own keep-alive connection posting the four sample photos in turn to /detect, for a
bounded time and count. Offline: detect_batch over the same images, --max-batch at a time, just before each level
(the server idle; the machine's speed drifts); and one image's detect here, before the levels (what a lone client's
p50 is measured against; not taking turns with requests: this process's kernel threads spin on the cores a while
after a pass, which slowed the server's next one). The goals: at 8 or more clients at least 0.9x the offline images
per second; a lone client's p50 within 5 ms of a detect.
"""
import argparse
import http.client
import re
import statistics
import subprocess
import sys
import threading
import time

from pydarknet.files.resources import find_file
from pydarknet.tasks.about import cpu_line
from pydarknet.tasks.serve.settings import ServeSettings

from .peers import weights_file

IMAGES = ("dog.jpg", "eagle.jpg", "person.jpg", "shapes.jpg")
CLIENTS = (1, 4, 16)


def offline(detector, paths, batch, seconds):
    """Images per second of detect_batch, `batch` images a call (median over `seconds`)."""
    batches = [(paths * batch)[i:i + batch] for i in range(0, len(paths) * batch, batch)]
    rates, ends = [], time.perf_counter() + seconds
    while time.perf_counter() < ends or len(rates) < 3:
        for chosen in batches:
            started = time.perf_counter()
            detector.detect_batch(chosen)
            rates.append(len(chosen) / (time.perf_counter() - started))
    return statistics.median(rates)


def alone(detector, paths, rounds):
    """Median seconds of one image's detect in this process."""
    times = []
    for _ in range(rounds):
        for path in paths:
            started = time.perf_counter()
            detector.detect(path)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def clients(address, bodies, count, seconds):
    """`count` clients posting `bodies` in turn for `seconds`: (images per second, each request's seconds)."""
    host, port = address
    latencies, lock = [], threading.Lock()
    ends = time.perf_counter() + seconds

    def client(first):
        connection = http.client.HTTPConnection(host, port, timeout=60)
        turn = first
        while time.perf_counter() < ends:
            started = time.perf_counter()
            connection.request("POST", "/detect", bodies[turn % len(bodies)])
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"the server answered {answer.status}")
            with lock:
                latencies.append(time.perf_counter() - started)
            turn += 1
        connection.close()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - started), latencies


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds of each load level [10]")
    args = parser.parse_args(argv)
    cfg, weights = find_file("cfg/yolov4-tiny.cfg"), weights_file("yolov4-tiny")
    paths = [str(find_file(f"data/{name}")) for name in IMAGES]
    bodies = [open(path, "rb").read() for path in paths]
    batch = ServeSettings().max_batch
    print(cpu_line())
    from pydarknet.tasks.predict import Detector
    detector = Detector(str(cfg), str(weights))
    detector.detect_batch(paths[:batch])   # compiled, buffers sized
    server = subprocess.Popen([sys.executable, "-m", "pydarknet", "serve", str(cfg), str(weights), "--port", "0",
                               "-q"], stdout=subprocess.PIPE, text=True)
    try:
        ready = re.match(r"pydarknet serve: ready on http://([\d.]+):(\d+)", server.stdout.readline())
        if ready is None:
            raise SystemExit("the server did not start")
        address = ready.group(1), int(ready.group(2))
        clients(address, bodies, 1, 1)   # the connections' and the server's first requests
        one = alone(detector, paths, rounds=5)
        print(f"one image's detect here: {one * 1000:.1f} ms; offline: detect_batch of {batch}, measured just "
              "before each level (the machine's speed drifts)")
        print(f"{'clients':>8} {'images/s':>9} {'offline':>8} {'x offline':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for count in CLIENTS:
            rate = offline(detector, paths, batch, args.seconds / 2)
            rate_served, latencies = clients(address, bodies, count, args.seconds)
            p50, p99 = (percentile(latencies, share) * 1000 for share in (.5, .99))
            print(f"{count:>8} {rate_served:>9.1f} {rate:>8.1f} {rate_served / rate:>9.2f} {p50:>8.1f} {p99:>8.1f}"
                  + (f"   (p50 - one detect: {p50 - one * 1000:+.1f} ms)" if count == 1 else ""), flush=True)
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
