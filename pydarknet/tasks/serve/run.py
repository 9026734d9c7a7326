"""The server's process: listen, warm every model, say it is ready in one line, serve until a stop signal, drain.

uvicorn runs in a thread of its own, so that the main thread keeps the commands' stop handling (tasks/stops.py):
the first SIGTERM, SIGINT or SIGHUP turns readiness false and new requests away (503), answers the requests in
flight (within `exit_timeout`, 30 s as Triton's), then the server closes and `serve` returns (the command exits 0);
a second signal ends the process at once.
"""
import socket
import threading
import time

from ...files.config import DarknetError, note
from .app import Server


def listening_socket(host, port):
    """A socket bound to (host, port) and listening; a DarknetError naming the address when it cannot be."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=2048)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except OSError as e:
        raise DarknetError(f"cannot listen on {host}:{port}: {e.strerror or e} (choose another --port or "
                           "--host)") from None


def serve(models, settings, debug=False, announce=print):
    """Serve `models` (name to ServedModel, in order) with `settings` (ServeSettings) until a stop signal; the ready
    line goes to `announce`."""
    import uvicorn
    sock = listening_socket(settings.host, settings.port)
    server = Server(models, settings, debug)
    try:
        config = uvicorn.Config(server.app, lifespan="off", access_log=False, log_config=None,
                                log_level="critical" if not debug else "info", timeout_graceful_shutdown=1)
        web = uvicorn.Server(config)
        thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, name="serve-http", daemon=True)
        thread.start()   # live at once, ready once warm: a probe meanwhile gets 503, not a hang
        for model in models.values():
            started = time.perf_counter()
            model.warm(settings.max_batch)
            note(f"{model.name}: a {model.kind}, warm in {time.perf_counter() - started:.1f} s")
        while not web.started and thread.is_alive():
            time.sleep(0.01)
        if not web.started:
            raise DarknetError(f"the server at {settings.host}:{settings.port} did not start (--debug tells why)")
        server.ready = True
        host, port = sock.getsockname()[:2]
        address = f"[{host}]" if ":" in host else host
        announce(f"pydarknet serve: ready on http://{address}:{port} ({', '.join(models)})", flush=True)
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt as stop:
            drain(server, web, thread, str(stop) or "SIGINT", settings.exit_timeout)
    finally:
        server.close()
        sock.close()


def drain(server, web, thread, signal_name, exit_timeout):
    """Readiness false, new requests 503, the requests in flight answered (at most `exit_timeout` s), then close."""
    server.draining = True
    note(f"pydarknet serve: {signal_name}: not ready; answering {server.in_flight} requests in flight")
    deadline = time.perf_counter() + exit_timeout
    while server.in_flight and time.perf_counter() < deadline:
        time.sleep(0.02)
    if server.in_flight:
        note(f"pydarknet serve: {server.in_flight} requests unanswered after --exit-timeout {exit_timeout:g} s")
    web.should_exit = True
    thread.join()
    note("pydarknet serve: stopped")
