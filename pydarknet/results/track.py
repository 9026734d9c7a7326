"""Tracking: a track id per object that stays with it from frame to frame and across short misses, and counting the
tracks that cross a line.

The association is ByteTrack's (Zhang et al., 2022) with a constant-velocity motion model in place of its Kalman
filter. Each frame every track's centre moves on by its velocity; the confident boxes (probability >= high_thresh)
are matched to the tracks by IoU first, then the less confident ones to the tracks still unmatched that were seen in
the frame before (an object partly hidden loses score, not its id). A confident box left over starts a track, which
gets its id when a box continues it in the next frame, so a one-frame false positive takes no id (on the first
frame every confident box gets one at once). A track unmatched for more than max_misses frames ends. A track's class
is the one with the highest summed probability over its boxes, so one misclassified frame does not change it; a
track continues only with a box that has its class among those over the threshold, so two objects of different
classes that pass close by do not swap ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np

from ..files.config import DarknetError
from ..kernels.track import match_boxes

R = TypeVar("R")   # a results.predictions.DetectionResult

# LineCounter's hysteresis, as a fraction of the box: past detectors' frame-to-frame jitter of a box's centre (a few
# percent of its size), well short of an object's way across the line.
COUNT_BAND = 0.25


@dataclass
class Track:
    box: np.ndarray          # float32 centre x, y, width, height (relative): where it is expected in this frame
    seen: np.ndarray         # the box it was last matched to
    velocity: np.ndarray     # of the centre, per frame
    votes: dict = field(default_factory=dict)   # class id -> summed probability
    id: int | None = None    # None until a second box continues it
    misses: int = 0          # frames since it was last matched
    hits: int = 1            # boxes matched to it

    @property
    def class_id(self):
        return max(self.votes, key=self.votes.get)

    def continue_with(self, box, class_id, prob):
        moved = (box[:2] - self.seen[:2]) / (self.misses + 1)
        self.velocity = moved if self.hits == 1 else (self.velocity + moved) / 2
        self.box, self.seen, self.misses, self.hits = box, box, 0, self.hits + 1
        self.votes[class_id] = self.votes.get(class_id, 0.0) + prob


class Tracker:
    """`update(result)` gives each box of a frame's DetectionResult its track id (see the module's docstring).
    `count_line`: (x1, y1, x2, y2) in the frame's pixels, or None; `count_band`: its hysteresis, see LineCounter."""

    def __init__(self, high_thresh: float = 0.5, match_iou: float = 0.2, low_match_iou: float = 0.5,
                 max_misses: int = 30, count_line: tuple[float, float, float, float] | None = None,
                 count_band: float = COUNT_BAND):
        self.high_thresh, self.match_iou, self.low_match_iou = high_thresh, match_iou, low_match_iou
        self.max_misses = max_misses
        self.counter = LineCounter(*count_line, band=count_band) if count_line is not None else None
        self.tracks = []
        self.next_id = 1
        self.frames = 0

    def update(self, result: R) -> R:
        """Set `result.track_ids` (per box of result.boxes: its track's id, or None) and each detection's
        `track_id`; count the crossings. Returns `result`."""
        candidates = []   # (box index, box, best class, its probability, all its classes)
        for index, (box, scored) in enumerate(result.boxes):
            if all(math.isfinite(v) for v in box):
                class_id, prob = max(scored, key=lambda s: s[1])
                candidates.append((index, np.array(box, np.float32), class_id, prob, {c for c, _ in scored}))
        for track in self.tracks:
            track.box = track.box.copy()
            track.box[:2] += track.velocity
        high = [c for c in candidates if c[3] >= self.high_thresh]
        low = [c for c in candidates if c[3] < self.high_thresh]
        owner = {}   # box index -> track
        unmatched = self._match(self.tracks, high, self.match_iou, owner)
        self._match([t for t in unmatched if t.misses == 0], low, self.low_match_iou, owner)
        matched_before = {id(t) for t in owner.values()}
        for track in self.tracks:
            if id(track) not in matched_before:
                track.misses += 1
        for index, box, class_id, prob, _ in high:
            if index not in owner:
                track = Track(box, box, np.zeros(2, np.float32), {class_id: prob})
                if self.frames == 0:
                    track.id, self.next_id = self.next_id, self.next_id + 1
                self.tracks.append(track)
                owner[index] = track
        self.tracks = [t for t in self.tracks if t.misses == 0 or (t.id is not None and t.misses <= self.max_misses)]
        self.frames += 1
        result.track_ids = [owner[i].id if i in owner else None for i in range(len(result.boxes))]
        start = 0
        for (_, scored), track_id in zip(result.boxes, result.track_ids):
            for detection in result.detections[start:start + len(scored)]:
                detection.track_id = track_id
            start += len(scored)
        if self.counter is not None:
            for track in self.tracks:
                if track.id is not None and track.misses == 0:
                    x, y, w, h = track.seen
                    self.counter.update(track.id, track.class_id, (x * result.width, y * result.height),
                                        (w * result.width, h * result.height))
        return result

    def _match(self, tracks, candidates, min_iou, owner):
        """Continue `tracks` with the `candidates` they match (recorded in `owner`); returns the tracks left."""
        if not tracks or not candidates:
            return list(tracks)
        allowed = np.array([[t.class_id in c[4] for c in candidates] for t in tracks])
        found = match_boxes(np.array([t.box for t in tracks], np.float32),
                            np.array([c[1] for c in candidates], np.float32), allowed, np.float32(min_iou))
        left = []
        for track, j in zip(tracks, found):
            if j < 0:
                left.append(track)
                continue
            index, box, class_id, prob, _ = candidates[j]
            track.continue_with(box, class_id, prob)
            if track.id is None:
                track.id, self.next_id = self.next_id, self.next_id + 1
            owner[index] = track
        return left


# How the drawing on the frame writes each direction.
ARROWS = {"left_to_right": "L>R", "right_to_left": "R>L", "top_to_bottom": "T>B", "bottom_to_top": "B>T"}


class LineCounter:
    """Counts the tracks whose centre crosses the segment from (x1, y1) to (x2, y2), in pixels, per class and
    direction. A direction is named by the side the track moves to, along the side of the line's normal that is
    nearer an image axis: "left_to_right" and "right_to_left" for a line nearer vertical, "top_to_bottom" and
    "bottom_to_top" for one nearer horizontal.

    With hysteresis, since a detector's boxes wobble from frame to frame and a track on the line would otherwise
    cross it at every wobble: a track is on a side only once its centre is more than `band` times its box's extent
    across the line (the box's width for an upright line, its height for a level one) past the line, and a crossing
    counts when a track last on one side is next on the other, having passed the line within the segment. Frames in
    the band count nothing, nor does where a track is first seen; a track that comes back counts again, the other
    way, once past the band on the side it came from. band=0 counts every change of side."""

    def __init__(self, x1, y1, x2, y2, band=COUNT_BAND):
        if (x1, y1) == (x2, y2):
            raise DarknetError(f"-count_line {x1},{y1},{x2},{y2}: the line's two ends are the same point; give "
                               "two points x1,y1,x2,y2")
        if not band >= 0:
            raise DarknetError(f"count band {band}: give a fraction of the box's size, 0 or more (e.g. .25)")
        self.start, self.direction = np.array([x1, y1], float), np.array([x2 - x1, y2 - y1], float)
        normal = np.array([-self.direction[1], self.direction[0]]) / np.hypot(*self.direction)
        if abs(normal[0]) >= abs(normal[1]):   # the way towards the normal's side first
            self.names = ("left_to_right", "right_to_left") if normal[0] > 0 else ("right_to_left", "left_to_right")
        else:
            self.names = ("top_to_bottom", "bottom_to_top") if normal[1] > 0 else ("bottom_to_top", "top_to_bottom")
        self.normal = normal
        self.band = band
        self.sides = {}    # track id -> (its side, 1 or -1, its centre when last past the band)
        self.counts = {}   # class id -> {direction: tracks}

    def distance(self, point):
        """How far `point` is from the line, in pixels: positive on the normal's side."""
        return float(self.normal @ (np.asarray(point, float) - self.start))

    def update(self, track_id, class_id, centre, size):
        """A track's box in this frame: its centre (x, y) and size (width, height), in pixels."""
        distance = self.distance(centre)
        if abs(distance) <= self.band * (abs(self.normal[0]) * size[0] + abs(self.normal[1]) * size[1]):
            return   # in the band (or on the line): still on the side it was
        side = 1 if distance > 0 else -1
        before = self.sides.get(track_id)
        self.sides[track_id] = (side, centre)
        if before is None or before[0] == side:
            return
        # where the way from its last centre past the band to this one meets the line, as a fraction of the segment
        last = np.asarray(before[1], float)
        passed = last + (np.asarray(centre, float) - last) * self.distance(last) / (self.distance(last) - distance)
        along = (passed - self.start) @ self.direction / (self.direction @ self.direction)
        if 0 <= along <= 1:
            direction = self.names[0] if side > 0 else self.names[1]
            counted = self.counts.setdefault(class_id, dict.fromkeys(self.names, 0))
            counted[direction] += 1

    def as_json(self, names):
        """{"line": [x1, y1, x2, y2], "band": band, "counts": {class name: {direction: tracks}}}."""
        x1, y1 = self.start
        x2, y2 = self.start + self.direction
        return {"line": [x1, y1, x2, y2], "band": self.band,
                "counts": {names[c]: dict(counted) for c, counted in sorted(self.counts.items())}}

    def draw(self, bgr, names):
        """The line and the counts, on a uint8 BGR frame."""
        x1, y1 = self.start
        x2, y2 = self.start + self.direction
        cv2.line(bgr, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 255), 2)
        rows = list(self.as_json(names)["counts"].items())
        for row, (name, counted) in enumerate(rows):   # at the bottom left, under the objects' labels
            text = f"{name} " + " ".join(f"{ARROWS[d]} {n}" for d, n in counted.items())
            bottom = bgr.shape[0] - 6 - 14 * (len(rows) - 1 - row)
            cv2.putText(bgr, text, (4, bottom), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
        return bgr
