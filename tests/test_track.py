"""Tracking and counting (pydarknet/results/track.py): ids that stay with their objects, measured with py-motmetrics
on a clip with known tracks (tests/moving_shapes.py), the line counts, and the ids on the drawn frames."""
import json

import motmetrics
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from moving_shapes import COUNT_LINE, HEIGHT, WIDTH, write_clip
from pydarknet.cli import cli
from pydarknet.files.image import from_bgr8, to_bgr8
from pydarknet.results.track import LineCounter, Tracker
from pydarknet.tasks.predict import Detection, DetectionResult, Detector
from pydarknet.tasks.video import Video

SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")]
NAMES = ["circle", "square", "triangle"]
# What the README states for the 40-frame clip (measured: IDF1 0.931, no ID switch, MOTA 0.867).
MIN_IDF1, MAX_SWITCHES = 0.90, 0


def frame_of(*boxes):
    """A DetectionResult of 100x100 pixels with one box per (class, prob, centre x, centre y, size) (relative)."""
    result = DetectionResult("frame", 100, 100, 0.0)
    for class_id, prob, x, y, size in boxes:
        box = (x, y, size, size)
        result.boxes.append((box, [(class_id, prob)]))
        result.detections.append(Detection(class_id, NAMES[class_id], prob, prob, box, (0, 0, 0, 0)))
    return result


def test_an_id_survives_a_miss_and_a_one_frame_false_positive_takes_none():
    tracker = Tracker(max_misses=3)
    first = tracker.update(frame_of((0, 0.9, 0.2, 0.5, 0.1), (1, 0.9, 0.8, 0.5, 0.1)))
    assert first.track_ids == [1, 2]                                   # the first frame's boxes get ids at once
    assert [d.track_id for d in first.detections] == [1, 2]
    tracker.update(frame_of((0, 0.9, 0.22, 0.5, 0.1)))                   # the square is missed
    stray = tracker.update(frame_of((1, 0.9, 0.79, 0.5, 0.1), (0, 0.9, 0.24, 0.5, 0.1), (2, 0.8, 0.5, 0.1, 0.1)))
    assert stray.track_ids == [2, 1, None]           # the square is back with its id; the stray triangle waits
    later = tracker.update(frame_of((0, 0.3, 0.26, 0.5, 0.1), (1, 0.9, 0.78, 0.5, 0.1)))
    assert later.track_ids == [1, 2]    # a low score continues a track seen in the frame before; no id 3 was used
    assert tracker.update(frame_of((2, 0.9, 0.5, 0.9, 0.1), (2, 0.9, 0.5, 0.9, 0.1))).track_ids == [None, None]
    assert tracker.update(frame_of((2, 0.9, 0.5, 0.9, 0.1))).track_ids == [3]


def test_a_track_moves_on_with_its_velocity_and_keeps_its_class():
    tracker = Tracker()
    for x in (0.1, 0.15, 0.2, 0.25):   # 0.05 a frame, boxes 0.08 wide
        assert tracker.update(frame_of((0, 0.9, x, 0.5, 0.08))).track_ids == [1]
    tracker.update(frame_of())
    tracker.update(frame_of())
    # 0.15 from where it was last seen, no overlap with it: found where its velocity says it would be
    assert tracker.update(frame_of((0, 0.9, 0.4, 0.5, 0.08))).track_ids == [1]
    assert tracker.update(frame_of((1, 0.9, 0.45, 0.5, 0.08))).track_ids == [None]   # another class: not it


def test_line_counter_counts_each_crossing_by_class_and_direction():
    counter = LineCounter(50, 0, 50, 100, band=0)
    path = [(40, 50), (49, 50), (50, 50), (55, 50), (45, 50)]   # on the line counts once it is off it
    for centre in path:
        counter.update(7, 2, centre, (10, 10))
    counter.update(8, 0, (60, 120), (10, 10))
    counter.update(8, 0, (40, 120), (10, 10))                   # below the segment's end: not a crossing
    assert counter.as_json(NAMES) == {"line": [50.0, 0.0, 50.0, 100.0], "band": 0,
                                      "counts": {"triangle": {"right_to_left": 1, "left_to_right": 1}}}
    assert LineCounter(0, 10, 100, 10).names == ("top_to_bottom", "bottom_to_top")
    assert LineCounter(100, 10, 0, 10).names == ("bottom_to_top", "top_to_bottom")


def test_the_band_is_the_box_extent_across_the_line():
    """A level line's band is a share of the box's height: a box 10 wide, 40 tall is on a side 10 pixels (.25 x 40)
    past it. Measured on the width (2.5 pixels), this path would count three crossings."""
    counter = LineCounter(0, 50, 100, 50)
    for y in (30, 58, 42, 58, 61):
        counter.update(1, 0, (50, y), (10, 40))
    assert counter.as_json(NAMES)["counts"] == {"circle": {"top_to_bottom": 1, "bottom_to_top": 0}}


def wobbling_path():
    """A box's centre x (relative) frame by frame: in from the left, slowing down, 40 frames wobbling across the line
    x = .5 by 1.5-4 % of the frame (less than the band: a quarter of the box's .2 width, 5 %), over the line to the
    right and slowly back to it, 40 more frames wobbling on it, away to the left."""
    wobble = [0.5 + (-1) ** k * (0.015 + 0.025 * abs(np.sin(k))) for k in range(40)]
    return ([0.2, 0.25, 0.3, 0.35, 0.4, 0.44, 0.47] + wobble + [0.55, 0.6, 0.65, 0.7, 0.75, 0.8]
            + [0.75, 0.7, 0.65, 0.6, 0.56, 0.53] + wobble + [0.45, 0.4, 0.35, 0.3, 0.25, 0.2])


@pytest.mark.parametrize("band, counts", [(None, 1), (0, 40)])
def test_a_box_wobbling_on_the_line_counts_once_each_way(band, counts):
    """Through the tracker, as the demos count: one track whose box wobbles across the line for 40 frames, then
    crosses, wobbles 40 more and comes back, counts one crossing each way, not one per wobble (band=0, no
    hysteresis, as counting was: 40 each way, the jitter the issue saw counted)."""
    tracker = Tracker(count_line=(50, 0, 50, 100), **({} if band is None else {"count_band": band}))
    for k, x in enumerate(wobbling_path()):
        assert tracker.update(frame_of((1, 0.9, x, 0.5 + 0.01 * np.cos(k), 0.2))).track_ids == [1]
    assert tracker.counter.as_json(NAMES)["counts"]["square"] == {"left_to_right": counts, "right_to_left": counts}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("track") / "moving.avi"
    return path, write_clip(path)


def iou_distances(truth, found):
    """motmetrics' distance matrix: 1 - IoU of (left, top, width, height) boxes, NaN (no match) under IoU .5.
    (motmetrics.distances.iou_matrix uses np.asfarray, which NumPy 2 removed.)"""
    distances = np.full((len(truth), len(found)), np.nan)
    for i, (l1, t1, w1, h1) in enumerate(truth):
        for j, (l2, t2, w2, h2) in enumerate(found):
            inter = max(0, min(l1 + w1, l2 + w2) - max(l1, l2)) * max(0, min(t1 + h1, t2 + h2) - max(t1, t2))
            iou = inter / (w1 * h1 + w2 * h2 - inter)
            if iou >= 0.5:
                distances[i, j] = 1 - iou
    return distances


def test_ids_on_the_clip_meet_the_stated_idf1_and_switches(clip):
    path, truth = clip
    detector = Detector(SHAPES[1], SHAPES[2], names=NAMES)
    frames = [from_bgr8(frame.bgr) for frame in Video(path).frames()]
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    tracker = Tracker(count_line=COUNT_LINE)
    for shapes, result in zip(truth, detector.track(frames, tracker, thresh=0.25)):
        found = [(track_id, ((x - w / 2) * WIDTH, (y - h / 2) * HEIGHT, w * WIDTH, h * HEIGHT))
                 for ((x, y, w, h), _), track_id in zip(result.boxes, result.track_ids) if track_id is not None]
        accumulator.update([s[0] for s in shapes], [f[0] for f in found],
                           iou_distances([s[2:] for s in shapes], [f[1] for f in found]))
    summary = motmetrics.metrics.create().compute(accumulator, metrics=["idf1", "num_switches", "mota"])
    idf1, switches = summary["idf1"].iloc[0], summary["num_switches"].iloc[0]
    assert idf1 >= MIN_IDF1 and switches <= MAX_SWITCHES, summary.to_string()
    assert tracker.counter.as_json(NAMES)["counts"] == {   # each shape crossed x = 112 once, its own way
        "circle": {"right_to_left": 1, "left_to_right": 0}, "square": {"right_to_left": 0, "left_to_right": 1},
        "triangle": {"right_to_left": 1, "left_to_right": 0}}


def test_demo_track_shows_ids_in_text_and_json(clip, tmp_path, monkeypatch):
    path, _ = clip
    monkeypatch.chdir(tmp_path)
    line = ",".join(map(str, COUNT_LINE))
    text = CliRunner().invoke(cli, ["detector", "demo", *SHAPES, str(path), "-thresh", ".25", "-track", "-q"])
    docs = CliRunner().invoke(cli, ["detector", "demo", *SHAPES, str(path), "-thresh", ".25", "-count_line", line,
                                    "-count_band", ".3", "--json", "-q"])
    assert text.exit_code == 0 and docs.exit_code == 0, text.output + docs.output
    first = text.stdout.split("Objects:\n\n")[1].splitlines()
    assert first[:3] == ["triangle: 95% \t(track_id: 1)", "square: 74% \t(track_id: 2)", "circle: 97% \t(track_id: 3)"]
    frames = [json.loads(line) for line in docs.stdout.splitlines()]
    assert [d["track_id"] for d in frames[0]["detections"]] == [1, 2, 3]
    assert frames[-1]["counting"]["counts"]["square"] == {"right_to_left": 0, "left_to_right": 1}
    assert frames[0]["counting"] == {"line": [112.0, 0.0, 112.0, 143.0], "band": .3, "counts": {}}


def test_count_line_needs_four_numbers(clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["detector", "demo", *SHAPES, str(clip[0]), "-count_line", "1,2,3", "-q"])
    assert result.exit_code == 2 and "x1,y1,x2,y2" in result.output


def test_a_tracked_frame_is_drawn_with_each_track_id(clip, monkeypatch):
    """Detector.draw on a tracked frame writes "<name> #<id>" on each box's tag: drawn box by box on black, the
    tag's filled top row is wider than the untracked drawing's by exactly cv2.getTextSize's width difference for
    the text with and without " #<id>" (the font, scale and thickness draw_detections passes to putText), and the
    whole drawing on the frame is pixel for pixel the untracked drawing of a class renamed "<name> #<id>"."""
    import cv2
    import pydarknet.files.image as image_module
    path, _ = clip
    detector = Detector(SHAPES[1], SHAPES[2], names=NAMES)
    frames = [from_bgr8(frame.bgr) for frame, _ in zip(Video(path).frames(), range(13))]
    result = list(detector.track(frames, Tracker(), thresh=0.25))[-1]   # the 13th frame: every tag fits
    assert sorted(result.track_ids) == [1, 2, 3]
    written = []
    put_text = cv2.putText
    monkeypatch.setattr(image_module.cv2, "putText", lambda img, text, org, font, scale, colour, thick, *rest:
                        written.append((text, font, scale, thick)) or put_text(img, text, org, font, scale, colour,
                                                                                thick, *rest))

    def alone(box, track_id):
        one = DetectionResult("frame", result.width, result.height, 0.0, boxes=[box],
                              track_ids=None if track_id is None else [track_id])
        written.clear()
        canvas = detector.draw(np.zeros((HEIGHT, WIDTH, 3), np.uint8), one)
        (text, font, scale, thick), = written
        top_row = canvas[np.flatnonzero(canvas.any(axis=(1, 2)))[0]]   # the tag's border, above the box
        columns = np.flatnonzero(top_row.any(axis=1))
        assert columns[-1] < WIDTH - 1 and len(columns) == columns[-1] - columns[0] + 1   # whole, not clipped
        return text, len(columns), cv2.getTextSize(text, font, scale, thick)[0][0]

    for box, track_id in zip(result.boxes, result.track_ids):
        name = ", ".join(NAMES[c] for c, _ in box[1])
        plain, plain_width, plain_text_width = alone(box, None)
        tagged, tagged_width, tagged_text_width = alone(box, track_id)
        assert (plain, tagged) == (name, f"{name} #{track_id}")
        assert tagged_width - plain_width == tagged_text_width - plain_text_width > 0, (tagged, plain)

    monkeypatch.setattr(image_module.cv2, "putText", put_text)
    frame = to_bgr8(frames[-1])
    drawn = detector.draw(frame.copy(), result)
    untracked = detector.draw(frame.copy(), DetectionResult("frame", result.width, result.height, 0.0,
                                                            boxes=result.boxes))
    assert np.abs(drawn.astype(int) - frame).max() > 100 and not np.array_equal(drawn, untracked)
    renamed, expected = Detector(SHAPES[1], SHAPES[2], names=NAMES), frame.copy()
    for box, track_id in zip(result.boxes, result.track_ids):   # in draw's order, each over the ones before
        renamed.names = list(NAMES)
        renamed.names[box[1][-1][0]] += f" #{track_id}"
        renamed.draw(expected, DetectionResult("frame", result.width, result.height, 0.0, boxes=[box]))
    assert np.array_equal(drawn, expected)
