"""stdin as a script, cron or CI gives it, never a terminal: the real command (`python3 -m pydarknet`) with a pipe
or /dev/null. An image piped in is taken as its bytes (told by the JPEG or PNG signature), anything else as image
paths, one per line, as darknet reads them; a missing argument is the usage error a terminal run gives."""
import json
import os
import pty
import subprocess
import sys

import cv2
import pytest

from conftest import ROOT

SHAPES = [str(ROOT / "cfg/shapes.data"), str(ROOT / "cfg/shapes-tiny.cfg"), str(ROOT / "data/shapes-tiny.weights")]
SHAPES_JPG = ROOT / "data/shapes.jpg"


def command(argv, stdin, cwd):
    """(exit code, stdout, stderr) of `python3 -m pydarknet argv`, `stdin` bytes through a pipe, or a file
    descriptor / subprocess.DEVNULL as the command's stdin."""
    piped = isinstance(stdin, bytes)
    proc = subprocess.run([sys.executable, "-m", "pydarknet", *map(str, argv)], input=stdin if piped else None,
                          stdin=None if piped else stdin, capture_output=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_a_piped_jpeg_is_detected_as_its_file(tmp_path):
    """`cat shapes.jpg | pydarknet detector test ...`: the lines and the drawing of the file named as an argument
    (the same decoder, stb_image's pixels), the image named stdin; today's ValueError: embedded null byte."""
    code, out, err = command(["detector", "test", *SHAPES, "-thresh", ".2", "-q"], SHAPES_JPG.read_bytes(), tmp_path)
    assert (code, err) == (0, "")
    drawn = (tmp_path / "predictions.jpg").read_bytes()
    named = command(["detector", "test", *SHAPES, SHAPES_JPG, "-thresh", ".2", "-q"], b"", tmp_path)
    head, *lines = out.splitlines()
    assert head.startswith("stdin: Predicted in ") and lines
    assert named[1].splitlines()[1:] == lines and (tmp_path / "predictions.jpg").read_bytes() == drawn


def test_a_piped_png_is_classified_as_its_file(small_classifier, tmp_path):
    png = tmp_path / "dog.png"
    cv2.imwrite(str(png), cv2.imread(str(ROOT / "data/dog.jpg")))
    argv = ["classifier", "predict", *small_classifier, "--json", "-q"]
    code, out, err = command(argv, png.read_bytes(), tmp_path)
    named = command([*argv, png], b"", tmp_path)
    assert (code, err, named[0]) == (0, "", 0)
    piped, by_name = json.loads(out), json.loads(named[1])
    assert (piped["image"], by_name["image"]) == ("stdin", str(png))
    assert len(piped["predictions"]) == 3 and piped["predictions"] == by_name["predictions"]


def test_piped_paths_are_still_read_one_per_line(tmp_path):
    code, out, _ = command(["detector", "test", *SHAPES, "-q"], f"{SHAPES_JPG}\n{SHAPES_JPG}\n".encode(), tmp_path)
    assert code == 0 and [line.split(": Predicted")[0] for line in out.splitlines() if "Predicted" in line] == \
           [str(SHAPES_JPG)] * 2


@pytest.mark.parametrize("words", [["detect"], ["detector", "test"], ["classify"], ["classifier", "predict"]])
def test_the_help_says_what_stdin_takes(words, tmp_path):
    code, out, _ = command([*words, "--help"], b"", tmp_path)
    assert code == 0 and "or the bytes of one JPEG or PNG image" in " ".join(out.split())


@pytest.mark.parametrize("argv, usage", [
    (["detect", "cfg/shapes-tiny.cfg", "data/shapes.jpg"], "detect"),
    (["detector", "test", "cfg/shapes.data", "cfg/shapes-tiny.cfg", "data/shapes.jpg"], "detector test"),
    (["classify", "cfg/tiny.cfg", "data/dog.jpg"], "classify"),
    (["demo", "cfg/shapes-tiny.cfg", "street.mp4"], "demo")])
def test_a_missing_argument_is_the_terminals_usage_error(argv, usage, tmp_path):
    """The image (or video) never stands in for the WEIGHTS: whether stdin is a terminal, empty, or a pipe of
    paths, the one line is click's, exit 2 (today: `no image: stdin is empty`, or the image read as weights)."""
    expected = f"pydarknet: error: Missing argument 'WEIGHTS'. (see `pydarknet {usage} --help`)\n"
    master, terminal = pty.openpty()
    try:
        for stdin in (terminal, subprocess.DEVNULL, f"{SHAPES_JPG}\n".encode()):
            assert command(argv, stdin, ROOT) == (2, "", expected)
    finally:
        os.close(master)
        os.close(terminal)


@pytest.mark.parametrize("extra, stdin, line", [
    ([], b"", "no image: stdin is empty; give IMAGE paths as arguments, or pipe in their paths (one per line) or a "
              "JPEG or PNG image"),
    ([], b"GIF89a\x01\x00\x01\x00\x00\x00\x00", "stdin holds binary data, neither a JPEG nor a PNG image: pipe one "
                                                "of those, or image paths, one per line"),
    (["-save_labels"], None, "-save_labels writes the labels beside the image: pipe the image's path, not its bytes"),
    (["--dask", "local:1"], None, "an image piped on stdin stays in this process: pipe its path instead, or run "
                                  "without --dask")])
def test_what_stdin_cannot_give_is_one_usage_line(extra, stdin, line, tmp_path):
    """Before any network loads: nothing written, exit 2."""
    stdin = SHAPES_JPG.read_bytes() if stdin is None else stdin
    assert command(["detector", "test", *SHAPES, *extra], stdin, tmp_path) == (2, "", f"pydarknet: error: {line}\n")
    assert list(tmp_path.iterdir()) == []
