"""The live output of a demo run: the MJPEG port (the page, the annotated stream, the page's events), the JSON
port (the fork's JSON stream and Server-Sent Events) and -http_post_host, fed by video.run_demo frame by frame.

Routes of the MJPEG port: `/` the page to a browser's navigation (its Accept asks for text/html), the stream to
every other client (VLC, ffmpeg, OpenCV, an <img>: the fork's contract); `/stream` always the stream; `/events` one
Server-Sent Event per frame; `/live.js`, `/live.css` the page's script and style. Routes of the JSON port: `/` the
fork's stream (an array of its frame objects, one element per frame, closed with "]" when the video ends);
`/events` the same events as the MJPEG port's. Anything else is 404. One server thread (live/server.py) serves both.
"""
from pathlib import Path

import cv2

from ...files.config import DarknetError
from ...results.output import fork_json, fork_objects
from .messages import MJPEG_BOUNDARY, event, mjpeg_part
from .post import Poster
from .server import Server, Stream, Whole

PAGE = Path(__file__).parent / "page"
# Messages a client may have unsent before it skips: a slow viewer shows fewer frames rather than older ones.
MJPEG_BACKLOG, EVENT_BACKLOG, JSON_BACKLOG = 2, 16, 64
MJPEG_STREAM = Stream("mjpeg", f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}", MJPEG_BACKLOG,
                      closing=f"--{MJPEG_BOUNDARY}--\r\n".encode())
EVENTS = Stream("events", "text/event-stream", EVENT_BACKLOG, closing=event({}, "end"))
FORK_JSON = Stream("json", "application/json", JSON_BACKLOG, opening=b"[\n", separator=b", \n", closing=b"\n]")


def page_routes():
    page = Whole("text/html; charset=utf-8", (PAGE / "index.html").read_bytes())
    script = Whole("text/javascript; charset=utf-8", (PAGE / "live.js").read_bytes())
    style = Whole("text/css; charset=utf-8", (PAGE / "live.css").read_bytes())
    return {"/": lambda accept: page if "text/html" in accept else MJPEG_STREAM,
            "/stream": lambda accept: MJPEG_STREAM, "/events": lambda accept: EVENTS,
            "/live.js": lambda accept: script, "/live.css": lambda accept: style}


JSON_ROUTES = {"/": lambda accept: FORK_JSON, "/events": lambda accept: EVENTS}


class LiveOutput:
    """A run_demo listener (see video.run_demo) serving the frames of `source` (its name). The ports open here, so
    that a port in use fails before the network loads, and clients may connect while it does. `tracker`: the run's
    track.Tracker, whose line counts go with each frame, named with `names` (both may be set later)."""

    def __init__(self, source, mjpeg_port=None, json_port=None, post_url=None, host="127.0.0.1", quality=40,
                 tracker=None, names=None, max_clients=64, post_timeout=3.0):
        if not 1 <= quality <= 100:
            raise DarknetError(f"-mjpeg_quality {quality}: a JPEG quality is from 1 to 100")
        self.source, self.tracker, self.names, self.quality = source, tracker, names, quality
        ports = {}
        if mjpeg_port is not None:
            ports["-mjpeg_port"] = (mjpeg_port, page_routes())
        if json_port is not None:
            ports["-json_port"] = (json_port, JSON_ROUTES)
        self.server = Server(host, ports, max_clients) if ports else None
        try:
            self.poster = Poster(post_url, post_timeout) if post_url is not None else None
        except DarknetError:
            self.close()
            raise
        self.drawing = mjpeg_port is not None

    def frame(self, frame, result, rate):
        objects = fork_objects(result)
        counter = self.tracker.counter if self.tracker is not None else None
        counting = counter.as_json(self.names) if counter is not None else None
        text = fork_json(frame.number, objects, counting=counting).encode()
        if self.poster is not None:
            self.poster.post(text)
        if self.server is None:
            return
        doc = {"frame_id": frame.number, "time": frame.time, "source": self.source, "fps": rate.fps,
               "width": result.width, "height": result.height, "objects": objects}
        if counting is not None:
            doc["counting"] = counting
        messages = [(FORK_JSON.channel, text), (EVENTS.channel, event(doc))]
        if self.drawing:   # encoded in the server's thread, and only the newest frame when it falls behind
            messages.append((MJPEG_STREAM.channel, lambda bgr=frame.bgr: mjpeg_part(self.jpeg(bgr))))
        self.server.publish(messages)

    def jpeg(self, bgr):
        return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])[1].tobytes()

    def close(self):
        """Close every stream (the JSON array ends with "]", the events with an "end" event) and free the ports."""
        if self.server is not None:
            self.server.close()
        if self.poster is not None:
            self.poster.close()

    def addresses(self, host):
        """What is served where, for the user: one line per port."""
        ports = self.server.ports if self.server is not None else {}
        lines = []
        if "-mjpeg_port" in ports:
            lines.append(f"live page and MJPEG stream: http://{host}:{ports['-mjpeg_port']}/ (the stream alone: "
                         "/stream)")
        if "-json_port" in ports:
            lines.append(f"live JSON stream: http://{host}:{ports['-json_port']}/ (Server-Sent Events: /events)")
        return lines
