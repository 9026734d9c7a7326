"""What the live output sends for one frame besides the fork's JSON text (output.fork_json): the Server-Sent Event
the page reads, and the MJPEG stream's part."""
import json

from ...results.output import strict_json

MJPEG_BOUNDARY = "mjpegstream"   # the fork's


def event(doc, name=None):
    """`doc` as one Server-Sent Event (strict JSON on one data line)."""
    data = json.dumps(strict_json(doc), allow_nan=False, separators=(",", ":"))
    return ((f"event: {name}\n" if name else "") + f"data: {data}\n\n").encode()


def mjpeg_part(jpeg):
    """One JPEG of the multipart/x-mixed-replace stream."""
    head = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode() + jpeg + b"\r\n"
