"""`detector demo` / `demo`: every frame of a video detected as `detect` detects that frame, the annotated video and
frames written, -frame_skip, -batch, and sources that cannot be opened or break."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from pydarknet.cli import cli
from pydarknet.tasks.predict import Detector
from pydarknet.tasks.video import Video, run_demo

SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")]
FPS = 5


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A 6-frame MJPG .avi of the shapes picture, flipped and shifted, at 5 fps; and its frames as OpenCV decodes
    them back, saved losslessly (.png) for `detect`."""
    folder = tmp_path_factory.mktemp("video")
    shapes = cv2.imread(str(ROOT / "data/shapes.jpg"))
    frames = [shapes, shapes[:, ::-1], shapes[::-1], np.roll(shapes, 40, axis=1), np.roll(shapes, 30, axis=0),
              shapes[::-1, ::-1]]
    path = folder / "shapes.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (shapes.shape[1], shapes.shape[0]))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    decoded = []
    for i, frame in enumerate(read_frames(path)):
        decoded.append(str(folder / f"frame{i}.png"))
        cv2.imwrite(decoded[-1], frame)
    assert len(decoded) == len(frames)
    return str(path), decoded


def read_frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def invoke(args, folder, monkeypatch):
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(cli, [*map(str, args), "-q"])
    assert result.exit_code == 0, result.output
    return result.stdout


def json_lines(text):
    def refuse(token):
        raise ValueError(token)
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


def without_timing(doc):
    return {key: value for key, value in doc.items() if key not in ("seconds", "image", "frame", "time")}


@pytest.mark.parametrize("batch, darknet", [(1, "pjreddie"), (4, "ab")])
def test_each_frame_is_detected_as_detect_detects_it(video, tmp_path, monkeypatch, batch, darknet):
    path, decoded = video
    frames = json_lines(invoke(["detector", "demo", *SHAPES, path, "--json", "-thresh", ".2", "-batch", batch,
                                "--darknet", darknet], tmp_path, monkeypatch))
    images = json_lines(invoke(["detector", "test", *SHAPES, *decoded, "--json", "-thresh", ".2", "--darknet",
                                darknet], tmp_path, monkeypatch))
    assert [f["frame"] for f in frames] == [1, 2, 3, 4, 5, 6]
    assert [f["time"] for f in frames] == pytest.approx([i / FPS for i in range(6)])
    assert set(frames[0]) == {"frame", "time", "width", "height", "seconds", "detections"}
    assert [without_timing(f) for f in frames] == [without_timing(i) for i in images]
    assert sum(len(f["detections"]) for f in frames) > 6


def test_text_output_is_the_forks_objects_and_fps_lines(video, tmp_path, monkeypatch):
    path, decoded = video
    out = invoke(["detector", "demo", *SHAPES, path, "-thresh", ".2", "-ext_output"], tmp_path, monkeypatch)
    blocks = out.split("Objects:\n\n")[1:]
    assert len(blocks) == 6
    first = blocks[0].splitlines()
    assert first[-2] == "" and first[-1].startswith("FPS:") and " \t AVG_FPS:" in first[-1]
    detected = json_lines(invoke(["detector", "test", *SHAPES, decoded[0], "--json", "-thresh", ".2"], tmp_path,
                                 monkeypatch))[0]["detections"]
    names = [line.split(":")[0] for line in first[:-2]]
    assert names == [d["name"] for d in detected]   # one class per box here, in NMS order
    assert all(line.endswith(")") and "% \t(left_x: " in line for line in first[:-2])


@pytest.mark.parametrize("name", ["annotated.mp4", "annotated.avi", "annotated.mkv"])
def test_out_filename_writes_every_frame_at_the_same_size_and_rate(video, tmp_path, monkeypatch, name):
    path, _ = video
    invoke(["demo", SHAPES[1], SHAPES[2], path, "-out_filename", name, "-thresh", ".2", "-dont_show"], tmp_path,
           monkeypatch)
    written = read_frames(tmp_path / name)
    assert len(written) == 6 and written[0].shape == read_frames(path)[0].shape
    assert cv2.VideoCapture(str(tmp_path / name)).get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)


def test_prefix_writes_each_annotated_frame(video, tmp_path, monkeypatch):
    path, _ = video
    invoke(["detector", "demo", *SHAPES, path, "-prefix", "shot", "-thresh", ".2"], tmp_path, monkeypatch)
    files = sorted(p.name for p in tmp_path.glob("shot_*.jpg"))
    assert files == [f"shot_{i:08d}.jpg" for i in range(1, 7)]
    plain = read_frames(path)[0]
    drawn = cv2.imread(str(tmp_path / files[0]))
    assert drawn.shape == plain.shape and np.abs(drawn.astype(int) - plain).max() > 100   # boxes were drawn


def test_frame_skip_detects_one_frame_in_three_and_writes_them_all(video, tmp_path, monkeypatch):
    path, _ = video
    frames = json_lines(invoke(["detector", "demo", *SHAPES, path, "--json", "-frame_skip", "2", "-out_filename",
                                "skipping.avi"], tmp_path, monkeypatch))
    assert [f["frame"] for f in frames] == [1, 4]
    assert len(read_frames(tmp_path / "skipping.avi")) == 6


def test_time_limit_stops_after_the_first_batch(video, tmp_path, monkeypatch):
    path, _ = video
    frames = json_lines(invoke(["detector", "demo", *SHAPES, path, "--json", "-time_limit_sec", "0.000001",
                                "-batch", "2"], tmp_path, monkeypatch))
    assert [f["frame"] for f in frames] == [1, 2]


def run_process(args, folder):
    proc = subprocess.run([sys.executable, "-m", "pydarknet", *map(str, args)], capture_output=True, text=True,
                          cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, proc.stdout, proc.stderr


def test_a_source_that_cannot_be_opened_is_one_line(video, tmp_path):
    (tmp_path / "not-a-video.mp4").write_bytes(b"nothing here")
    for source in ["missing.mp4", "not-a-video.mp4"]:
        code, out, err = run_process(["detector", "demo", *SHAPES, source, "-q"], tmp_path)
        assert code == 1 and out == ""
        assert err.splitlines()[-1] == f"pydarknet: error: cannot open {source}: not a video file, image sequence " \
                                       "or stream OpenCV can read"
        assert "Traceback" not in err
    code, _, err = run_process(["detector", "demo", *SHAPES, video[0], "-out_filename", "out.gif", "-q"], tmp_path)
    assert code == 1 and err == "pydarknet: error: out.gif: the output video's name must end in .mp4, .avi, .mkv\n"


def test_a_broken_video_ends_cleanly(video, tmp_path, monkeypatch):
    path, _ = video
    data = open(path, "rb").read()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) // 2])
    frames = json_lines(invoke(["detector", "demo", *SHAPES, "cut.avi", "--json", "-out_filename", "out.avi"],
                               tmp_path, monkeypatch))
    assert 1 <= len(frames) < 6 and len(read_frames(tmp_path / "out.avi")) == len(frames)


def test_interrupted_run_leaves_a_playable_video(video, tmp_path):
    path, _ = video
    detector = Detector(SHAPES[1], SHAPES[2], names=["circle", "square", "triangle"])

    def show(frame, result, rate):
        if frame.number == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_demo(detector, Video(path), show, out_filename=str(tmp_path / "cut.mp4"))
    assert len(read_frames(tmp_path / "cut.mp4")) == 3


def test_progress_on_a_terminal_counts_frames(video, tmp_path, monkeypatch):
    import click._termui_impl

    from pydarknet import cli as cli_module
    path, _ = video
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_module.progress, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(click._termui_impl, "isatty", lambda stream: True)
    result = CliRunner().invoke(cli, ["detector", "demo", *SHAPES, path, "--json", "-batch", "2"])
    assert result.exit_code == 0, result.output
    assert "demo  [####" in result.stderr and "6/6 frames, " in result.stderr and " fps" in result.stderr
    assert len(json_lines(result.stdout)) == 6   # the bar never reaches stdout
