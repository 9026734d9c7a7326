"""The ports of the live output: a small HTTP/1.0 server in one thread, with one selector for every port and client.

Each port's routes are fixed at start (nothing is read from disk). A route answers either a whole response, or a
stream: the client joins a channel and gets, after the headers, every message `publish`ed to that channel from then
on. Publishing only hands the messages to the server's thread (one wake-up per call, so a frame's messages cost the
detection thread one switch), so the detection loop never waits for a client. A message may be a function that
makes it (a JPEG to encode): the server's thread calls it, only if a client is on its channel, and only the newest
of those waiting for one channel. Each client has its own backlog of at most its stream's `backlog` messages: a
client that reads more slowly than messages come (a slow network, a paused browser tab) skips messages, so it never
holds up the others. A request is
at most MAX_REQUEST bytes and must arrive within REQUEST_SECONDS; at most `max_clients` are served at once, the
others get 503. `close()` sends each stream its closing bytes, gives the clients a moment to read them, then closes
every connection and the listening sockets, so the ports are free again when it returns.
"""
import errno
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from ...files.config import DarknetError

MAX_REQUEST = 8192
REQUEST_SECONDS = 5.0
LINGER_SECONDS = 1.0   # how long close() lets the clients read the streams' last bytes
STATUS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
          431: "Request Header Fields Too Large", 503: "Service Unavailable"}
# Like the fork's: no client may cache a live answer.
NO_CACHE = "Cache-Control: no-cache, no-store, private\r\nPragma: no-cache\r\nExpires: 0\r\nConnection: close\r\n"


@dataclass
class Whole:
    """A route's whole answer."""
    content_type: str
    body: bytes
    status: int = 200


@dataclass
class Stream:
    """A route's stream: `channel`'s messages, `opening` first, `separator` between two messages, `closing` when
    the server closes; a client with `backlog` messages unsent skips the next ones (leaving no trace)."""
    channel: str
    content_type: str
    backlog: int
    opening: bytes = b""
    separator: bytes = b""
    closing: bytes = b""


@dataclass
class Client:
    sock: socket.socket
    routes: dict
    since: float
    request: bytes = b""
    stream: Stream = None
    sent_one: bool = False
    pending: deque = field(default_factory=deque)   # byte strings still to send; the first one partly sent
    offset: int = 0
    messages: int = 0                                # channel messages in `pending`
    done: bool = False                               # close once `pending` is sent
    waiting: bool = False                            # registered for EVENT_WRITE: the socket's buffer was full


def port_error(option, host, port, error):
    if error.errno == errno.EADDRINUSE:
        return DarknetError(f"{option} {port}: {host}:{port} is already in use by another program; choose another "
                            "port or stop the program using it")
    if error.errno == errno.EACCES:
        return DarknetError(f"{option} {port}: no permission to listen on {host}:{port}; ports under 1024 need "
                            "administrator rights, choose one from 1024 up")
    return DarknetError(f"{option} {port}: cannot listen on {host}:{port}: {error.strerror}")


def listen(host, port, option):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # not blocked by closed clients' TIME_WAIT
        listener.bind((host, port))
        listener.listen(16)
    except OSError as e:
        listener.close()
        raise port_error(option, host, port, e) from None
    except OverflowError:
        listener.close()
        raise DarknetError(f"{option} {port}: a port is a number from 1 to 65535") from None
    listener.setblocking(False)
    return listener


class Server:
    """`ports`: {option: (port, routes)}, routes: path -> function(accept header) -> Whole or Stream; the option
    names the port in error messages. `ports[option]` is then the port it listens on."""

    def __init__(self, host, ports, max_clients=64):
        self.max_clients = max_clients
        self.listeners = {}           # listening socket -> its routes
        self.ports = {}
        try:
            for option, (port, routes) in ports.items():
                listener = listen(host, port, option)
                self.listeners[listener] = routes
                self.ports[option] = listener.getsockname()[1]
        except DarknetError:
            for listener in self.listeners:
                listener.close()
            raise
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        self.inbox = deque()          # lists of (channel, message) from publish; None from close
        self.clients = {}             # socket -> Client
        self.watchers = {}            # channel -> clients on it, read by other threads (see watching)
        self.selector = selectors.DefaultSelector()
        for listener in [*self.listeners, self.wake_read]:
            self.selector.register(listener, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._serve, name="pydarknet live", daemon=True)
        self.thread.start()

    def publish(self, messages):
        """Send each (channel, message) to every client on its channel; returns at once. A message is bytes, or a
        function that makes them."""
        self.inbox.append(messages)
        self._wake()

    def watching(self, channel):
        """How many clients are on `channel` now."""
        return self.watchers.get(channel, 0)

    def close(self):
        """Send the streams' closing bytes, let the clients read them for up to LINGER_SECONDS, close everything."""
        if self.thread.is_alive():
            self.inbox.append(None)
            self._wake()
            self.thread.join(LINGER_SECONDS + 2)
        self.selector.close()
        for sock in [*self.clients, *self.listeners, self.wake_read, self.wake_write]:
            sock.close()
        self.clients.clear()

    def _wake(self):
        try:
            self.wake_write.send(b"\0")
        except (BlockingIOError, OSError):   # already woken (a full pipe), or closed
            pass

    def _serve(self):
        closing_since = None
        while True:
            timeout = 0.5 if closing_since is None else 0.05
            for key, events in self.selector.select(timeout):
                sock = key.fileobj
                if sock in self.listeners:
                    self._accept(sock)
                elif sock is self.wake_read:
                    try:
                        while self.wake_read.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                elif sock in self.clients:
                    client = self.clients[sock]
                    if events & selectors.EVENT_READ:
                        self._read(client)
                    if events & selectors.EVENT_WRITE and sock in self.clients:
                        self._write(client)
            if self.inbox:
                closing_since = self._deliver_inbox() or closing_since
            now = time.monotonic()
            for client in list(self.clients.values()):
                if client.stream is None and not client.done and now - client.since > REQUEST_SECONDS:
                    self._drop(client)
            if closing_since is not None and (not self.clients or now - closing_since > LINGER_SECONDS):
                return

    def _deliver_inbox(self):
        """Deliver what was published; returns the time when close() asked to finish, if it did."""
        items = []
        while self.inbox:
            batch = self.inbox.popleft()
            if batch is None:
                self._deliver(items)
                self._finish_streams()
                return time.monotonic()
            items += batch
        self._deliver(items)
        return None

    def _deliver(self, items):
        newest = {channel: i for i, (channel, message) in enumerate(items) if callable(message)}
        for i, (channel, message) in enumerate(items):
            if callable(message):
                if newest[channel] != i or not self.watchers.get(channel):
                    continue
                message = message()
            for client in list(self.clients.values()):
                stream = client.stream
                if stream is None or stream.channel != channel or client.done or client.messages >= stream.backlog:
                    continue
                client.messages += 1
                self._queue(client, (stream.separator if client.sent_one else b"") + message, counted=True)
                client.sent_one = True

    def _accept(self, listener):
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, OSError):
                return
            sock.setblocking(False)
            client = Client(sock, self.listeners[listener], time.monotonic())
            self.clients[sock] = client
            self.selector.register(sock, selectors.EVENT_READ)
            if len(self.clients) > self.max_clients:
                self._answer(client, Whole("text/plain", b"too many clients\n", 503))

    def _read(self, client):
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        if client.stream is not None or client.done:
            return   # a streaming client has nothing more to say; what it sends is ignored
        client.request += data
        if b"\r\n\r\n" in client.request:
            self._answer(client, self._route(client.routes, client.request.split(b"\r\n\r\n", 1)[0]))
        elif len(client.request) > MAX_REQUEST:
            self._answer(client, Whole("text/plain", b"request too large\n", 431))

    def _route(self, routes, head):
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return Whole("text/plain", b"bad request\n", 400)
        method, target, _ = parts
        route = routes.get(target.split("?", 1)[0])
        if route is None:
            return Whole("text/plain", b"not found\n", 404)
        if method != "GET":
            return Whole("text/plain", b"only GET\n", 405)
        accept = next((line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("accept:")),
                      "")
        return route(accept)

    def _answer(self, client, answer):
        status = answer.status if isinstance(answer, Whole) else 200
        head = f"HTTP/1.0 {status} {STATUS[status]}\r\nServer: pydarknet\r\n{NO_CACHE}" \
               f"Content-Type: {answer.content_type}\r\n"
        if isinstance(answer, Whole):
            client.done = True
            self._queue(client, (head + f"Content-Length: {len(answer.body)}\r\n\r\n").encode() + answer.body)
        else:
            client.stream = answer
            self.watchers[answer.channel] = self.watchers.get(answer.channel, 0) + 1
            self._queue(client, (head + "\r\n").encode() + answer.opening)

    def _finish_streams(self):
        for client in list(self.clients.values()):
            if client.stream is not None and not client.done:
                self._queue(client, client.stream.closing)
            client.done = True
        for listener in self.listeners:
            self.selector.unregister(listener)
            listener.close()

    def _queue(self, client, data, counted=False):
        client.pending.append((data, counted))
        self._write(client)

    def _write(self, client):
        while client.pending:
            data, counted = client.pending[0]
            try:
                sent = client.sock.send(memoryview(data)[client.offset:])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(client)
                return
            client.offset += sent
            if client.offset < len(data):
                break
            client.pending.popleft()
            client.offset = 0
            client.messages -= counted
        if not client.pending and client.done:
            self._drop(client)
            return
        if client.waiting != bool(client.pending):   # a system call only when the interest changes
            client.waiting = bool(client.pending)
            self.selector.modify(client.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if client.waiting else 0))

    def _drop(self, client):
        if client.sock not in self.clients:
            return
        del self.clients[client.sock]
        if client.stream is not None:
            self.watchers[client.stream.channel] -= 1
        self.selector.unregister(client.sock)
        try:
            client.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        client.sock.close()
