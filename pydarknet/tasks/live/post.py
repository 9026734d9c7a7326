"""-http_post_host: each frame's JSON POSTed to a URL from a background thread.

At most `queue_size` frames wait; while the queue is full new frames are dropped, and each POST gives up after
`timeout` seconds, so an endpoint that is slow, refuses or never answers costs the video nothing. On close the
frames still waiting get until one more `timeout` to go out; the rest are dropped (and counted).
"""
import http.client
import queue
import threading
import time
from urllib.parse import urlsplit

from ...files.config import DarknetError, note, warn


def post_target(url):
    """(scheme, host, port, path) of `url`; the fork's form without a scheme (host[:port]/path) means http."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DarknetError(f"-http_post_host {url}: not an http:// or https:// URL (e.g. http://127.0.0.1:8080/frames)")
    try:
        port = parts.port
    except ValueError:
        raise DarknetError(f"-http_post_host {url}: the port is not a number from 1 to 65535") from None
    return parts.scheme, parts.hostname, port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class Poster:
    def __init__(self, url, timeout=3.0, queue_size=16):
        self.url, self.timeout = url, timeout
        self.scheme, self.host, self.port, self.path = post_target(url)
        self.waiting = queue.Queue(queue_size)
        self.closing = threading.Event()
        self.deadline = None
        self.sent = self.dropped = self.failed = 0
        self.thread = threading.Thread(target=self._run, name="pydarknet -http_post_host", daemon=True)
        self.thread.start()

    def post(self, body):
        """Queue `body` (bytes of JSON); dropped when the queue is full."""
        try:
            self.waiting.put_nowait(body)
        except queue.Full:
            self.dropped += 1

    def close(self):
        self.deadline = time.monotonic() + self.timeout
        self.closing.set()
        self.thread.join(2 * self.timeout + 1)
        note(f"-http_post_host: {self.sent} frames posted" + (f", {self.failed} failed" if self.failed else "")
             + (f", {self.dropped} dropped" if self.dropped else ""))

    def _run(self):
        while True:
            try:
                body = self.waiting.get(timeout=0.1)
            except queue.Empty:
                if self.closing.is_set():
                    return
                continue
            if self.closing.is_set() and time.monotonic() > self.deadline:
                self.dropped += 1 + self.waiting.qsize()
                return
            self._send(body)

    def _send(self, body):
        connection = (http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection)(
            self.host, self.port, timeout=self.timeout)
        try:
            connection.request("POST", self.path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status >= 400:
                raise OSError(f"the server answered {response.status} {response.reason}")
            self.sent += 1
        except (OSError, http.client.HTTPException) as e:
            self.failed += 1
            if self.failed == 1:
                warn(f"-http_post_host {self.url}: {e or type(e).__name__}; the video goes on, frames that cannot be "
                     "posted are dropped")
        finally:
            connection.close()
