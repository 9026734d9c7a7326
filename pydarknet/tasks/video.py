"""Detection on video: the `demo` commands (the AlexeyAB fork's `detector demo`).

A source is anything OpenCV's VideoCapture opens: a video file, an image sequence pattern (`frames_%04d.png`), a
stream URL, or a camera number. Each frame, as OpenCV decodes it, becomes darknet's float image (no JPEG round
trip) and goes through predict.Detector exactly as `detect` would take the same pixels from an image file.
Frames are read and prepared in a background thread while the network runs, `batch` frames per forward pass.

`objects_lines` and `FrameRate` give what the fork's demo prints per frame, `frame_json` the --json line.
`out_filename` writes the annotated video (same size and frame rate), `prefix` each annotated frame as
PREFIX_%08d.jpg; the video is closed properly however the run ends (Ctrl-C, a broken stream).
"""
import math
import os
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from ..files.config import DarknetError, note, warn
from ..files.image import from_bgr8, save_image
from .stops import held
from .stream import batched, prefetch

# The codec written in each container: ones opencv-python-headless's FFmpeg can write without extra libraries.
CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
# The frame rate written when the source does not tell (a camera, an image sequence without one).
DEFAULT_FPS = 25.0

# FFmpeg's own lines (`[mpeg4 @ 0x...] header damaged`, per frame) are not shown: a source that gives no frame
# is one error line, a read that breaks one warning (OpenCV's FFmpeg reads this at its first capture).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


class VideoError(DarknetError):
    """A video source that cannot be opened or an output video that cannot be written."""


@dataclass
class Frame:
    number: int                  # 1 for the source's first frame
    time: float                  # seconds into the video
    bgr: np.ndarray              # uint8 (h, w, 3), as OpenCV decoded it
    prepared: object = None      # the network's input (predict.PreparedImage) for a frame that is detected
    skipped: list = field(default_factory=list)   # the frames after it that -frame_skip leaves undetected
    through: int = 0             # the number of the last frame it stands for (itself or the last one skipped)


class Video:
    """An opened source: `fps` (0 when unknown), `frame_count` (0 when unknown: a camera or a stream)."""

    def __init__(self, source=None, camera=None):
        if source is None:
            self.name = f"camera {camera or 0}"
            self.capture = cv2.VideoCapture(camera or 0)
        else:
            self.name = str(source)
            self.capture = cv2.VideoCapture(self.name)
        if not self.capture.isOpened():
            self.capture.release()
            if source is None:
                raise VideoError(f"cannot open camera {camera or 0}: no such camera, or it is in use (-c N picks "
                                 f"another)")
            raise VideoError(f"cannot open {self.name}: not a video file, image sequence or stream OpenCV can read")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 0.0
        self.frame_count = max(0, int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        try:
            self.first = self.read()   # now, before a network is loaded for a source that gives nothing
        except cv2.error as e:
            self.first = None
            why = str(e).strip().splitlines()[-1]
        else:
            why = "a damaged video, or a format this OpenCV cannot decode"
        if self.first is None:
            self.capture.release()
            raise VideoError(f"{self.name}: no frame could be read: {why}")

    def read(self):
        """The next frame's pixels and time in seconds; None at the end."""
        ok, bgr = self.capture.read()
        return (bgr, self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000) if ok else None

    def frames(self):
        """Frame after frame until the source ends or breaks; the capture is released when this generator ends
        (or is closed)."""
        try:
            number, pending, self.first = 0, self.first, None
            while True:
                try:
                    read, pending = pending or self.read(), None
                except cv2.error as e:
                    warn(f"{self.name}: stopped reading at frame {number + 1}: {str(e).strip().splitlines()[-1]}")
                    return
                if read is None:
                    return
                bgr, seconds = read
                if number and seconds <= 0:   # a source without timestamps
                    seconds = number / (self.fps or DEFAULT_FPS)
                number += 1
                yield Frame(number, seconds, bgr)
        finally:
            self.capture.release()


def detected_frames(video, prepare, frame_skip, keep_skipped):
    """The frames to detect, prepared for the network, each followed by (when `keep_skipped`) the `frame_skip`
    frames after it."""
    frames = video.frames()
    try:
        for frame in frames:
            frame.prepared = prepare(from_bgr8(frame.bgr))
            skipped = list(islice(frames, frame_skip))
            frame.through = skipped[-1].number if skipped else frame.number
            frame.skipped = skipped if keep_skipped else []
            yield frame
    finally:
        frames.close()


def codec_for(path):
    """The codec written for `path`'s extension (see CODECS)."""
    codec = CODECS.get(Path(path).suffix.lower())
    if codec is None:
        raise VideoError(f"{path}: the output video's name must end in {', '.join(CODECS)}")
    return codec


def open_writer(path, fps, width, height):
    codec = codec_for(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise VideoError(f"cannot write {path}: OpenCV could not open a {codec} video there")
    return writer


class FrameRate:
    """The two rates the fork's demo shows: FPS, each new rate weighing .1 against the past's .9, and AVG_FPS,
    the frames per second of the last full 3-second stretch."""

    def __init__(self):
        self.fps = self.avg_fps = 0.0
        self.last = self.stretch_start = time.perf_counter()
        self.stretch_frames = 0

    def tick(self, frames):
        now = time.perf_counter()
        self.fps = self.fps * 0.9 + frames / max(now - self.last, 1e-9) * 0.1
        self.last = now
        self.stretch_frames += frames
        if now - self.stretch_start >= 3:
            self.avg_fps = self.stretch_frames / (now - self.stretch_start)
            self.stretch_frames, self.stretch_start = 0, now


def fork_pixels(box, width, height):
    """A box as the fork's demo prints it with -ext_output: inf or NaN taken as .5, each value at most 1, left and
    top truncated to pixels and clamped at 0, width and height unrounded (float32)."""
    one = np.float32(1)
    x, y, w, h = (min(np.float32(v) if math.isfinite(v) else np.float32(0.5), one) for v in box)
    left = max(int((float(x) - float(w) / 2) * width), 0)
    top = max(int((float(y) - float(h) / 2) * height), 0)
    return left, top, float(w * np.float32(width)), float(h * np.float32(height))


def objects_lines(result, names, ext_output):
    """The fork's demo's lines for one frame's boxes, in NMS order: each box's classes over the threshold (not
    those named dont_show*) as "name: NN% " joined by ", ", then its pixels with -ext_output, then its track id
    when tracked ("\t(track_id: N)")."""
    lines = []
    track_ids = result.track_ids or [None] * len(result.boxes)
    for (box, scored), track_id in zip(result.boxes, track_ids):
        shown = [(c, p) for c, p in scored if not names[c].startswith("dont_show")]
        if not shown:
            continue
        line = ", ".join(f"{names[c]}: {float(np.float32(p) * np.float32(100)):.0f}% " for c, p in shown)
        if ext_output:
            line += "\t(left_x: {:4.0f}   top_y: {:4.0f}   width: {:4.0f}   height: {:4.0f})".format(
                *fork_pixels(box, result.width, result.height))
        if track_id is not None:
            line += f"\t(track_id: {track_id})"
        lines.append(line)
    return lines


def frame_json(frame, result, counting=None):
    """One frame's --json document: detect's, with the frame's number and time instead of an image name, and
    `counting`, the line counts so far (track.LineCounter.as_json), when given."""
    doc = result.as_json()
    del doc["image"]
    doc = {"frame": frame.number, "time": frame.time, **doc}
    if counting is not None:
        doc["counting"] = counting
    return doc


def draw_frame(detector, frame, result, tracker):
    """Draw `result`, and the tracker's count line, on the frame and on the frames skipped after it."""
    if len(result.finite_boxes()) < len(result.boxes):
        warn(f"frame {frame.number}: {len(result.boxes) - len(result.finite_boxes())} boxes with an inf or NaN "
             f"coordinate are not drawn")
    for shown in [frame, *frame.skipped]:
        detector.draw(shown.bgr, result)
        if tracker is not None and tracker.counter is not None:
            tracker.counter.draw(shown.bgr, detector.names)


def run_demo(detector, video, show, thresholds=None, batch=1, frame_skip=0, out_filename=None, prefix=None,
             time_limit=0, progress=None, tracker=None, listeners=()):
    """Detect the frames of `video` (a Video) with `detector` at `thresholds` (an options.Thresholds; None: its
    defaults), `batch` at a time: show(frame, result, rate) for each detected frame, then its drawing into
    `out_filename` and `prefix` files; progress(frames read, frame count), if given, after each batch. Returns the
    number of frames detected.

    `tracker`: a track.Tracker that gives each detected frame's boxes their track ids before `show` (and whose
    count line is drawn). `listeners`: what else each detected frame goes to (live.LiveOutput), objects with
    `drawing` (true: they get the frame drawn on), `frame(frame, result, rate)`, called after the drawing, and
    `close()`, called once when the run ends, however it ends."""
    drawing = out_filename is not None or prefix is not None or any(listener.drawing for listener in listeners)
    if out_filename is not None:
        codec_for(out_filename)   # a bad name fails now, not after the first batch
    frames = prefetch(detected_frames(video, detector.prepare, frame_skip, keep_skipped=out_filename is not None),
                      batch)
    rate = FrameRate()
    start = time.perf_counter()
    writer, written, detected = None, 0, 0
    try:
        for group in batched(frames, batch):
            results = detector.detect_batch([frame.prepared for frame in group], thresholds=thresholds)
            rate.tick(len(group))
            for frame, result in zip(group, results):
                with held():   # a stop signal comes between frames: each is in every output, or in none
                    detected += 1
                    if tracker is not None:
                        tracker.update(result)
                    show(frame, result, rate)
                    if drawing:
                        draw_frame(detector, frame, result, tracker)
                        if prefix is not None:
                            save_image(frame.bgr, f"{prefix}_{frame.number:08d}.jpg")
                        if out_filename is not None:
                            if writer is None:
                                height, width = frame.bgr.shape[:2]
                                writer = open_writer(out_filename, video.fps or DEFAULT_FPS, width, height)
                            for shown in [frame, *frame.skipped]:
                                writer.write(shown.bgr)
                                written += 1
                    for listener in listeners:
                        listener.frame(frame, result, rate)
            if progress is not None:
                progress(group[-1].through, video.frame_count)
            if time_limit and time.perf_counter() - start > time_limit:
                note(f"stopped after {time_limit} seconds (-time_limit_sec)")
                break
    finally:
        frames.close()
        for listener in listeners:
            listener.close()
        if writer is not None:
            writer.release()
            note(f"saved {out_filename} ({written} frames)")
    return detected
