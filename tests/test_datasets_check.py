"""`pydarknet datasets check DATA` and `datasets show DATA` on the shapes set, and `train` refusing a broken set
before its first iteration: faults planted by file and line, found by file and line."""
import re

import cv2
import numpy as np
from conftest import ROOT, run_command

from pydarknet.files.datasets import write_shapes
from pydarknet.files.labels import read_labels
from pydarknet.tasks.datasets.show import LINE, PANEL, TILE, colour


def test_a_clean_set_passes(tmp_path, capsys):
    data = write_shapes(tmp_path / "shapes", train=4, valid=2, seed=3)
    code, out, err = run_command(capsys, "datasets", "check", data)
    boxes = sum(len(read_labels(p)) for p in (tmp_path / "shapes" / "images").glob("*.txt"))
    assert code == 0, err
    assert out.splitlines() == [f"6 images (4 train, 2 valid), {boxes} boxes; 0 images without labels, 0 duplicate "
                                f"boxes, 0 images listed twice; 0 faults"]


def planted(tmp_path):
    """A shapes set with faults: a class out of range (line 2), a centre outside the image (line 1), a box line of
    four numbers (line 3), an image that is not one; a duplicate box and a missing label file, counted."""
    data = write_shapes(tmp_path / "shapes", train=4, valid=2, seed=3)
    images = tmp_path / "shapes" / "images"
    (images / "train_0000.txt").write_text("0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n")
    (images / "train_0001.txt").write_text("1 1.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2\n")
    (images / "train_0002.txt").write_text("1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n")
    (images / "valid_0000.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole JPEG")
    (images / "valid_0001.txt").unlink()
    return data, images


def test_planted_faults_are_found_by_file_and_line(tmp_path, capsys):
    data, images = planted(tmp_path)
    code, out, err = run_command(capsys, "datasets", "check", data)
    assert code == 1
    lines = out.splitlines()
    assert lines[:3] == [f"{images / 'train_0000.txt'}:2: class 5 out of range (classes=3)",
                         f"{images / 'train_0001.txt'}:1: box centre (1.5, 0.5) outside the image",
                         f"{images / 'train_0001.txt'}:3: expected 'class x y w h', got 4 fields: '2 0.5 0.5 0.2'"]
    assert lines[3].startswith(f"cannot load image {images / 'valid_0000.jpg'}") or \
        lines[3].startswith(f"{images / 'valid_0000.jpg'}")
    assert re.fullmatch(r"6 images \(4 train, 2 valid\), \d+ boxes; 1 images without labels, 1 duplicate boxes, "
                        r"0 images listed twice; 4 faults", lines[4])
    assert err.splitlines() == [f"pydarknet: error: {data}: 4 faults in its images or labels (listed above): fix or "
                                f"remove those lines and images, then check again"]


def test_train_refuses_a_broken_set_naming_the_first_faults(tmp_path, capsys):
    data, images = planted(tmp_path)
    code, _, err = run_command(capsys, "detector", "train", data, ROOT / "cfg" / "shapes-v4tiny.cfg",
                               "--max-batches", "1", "--backup", tmp_path / "backup", "-q")
    assert code == 1 and "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("pydarknet: error:")]
    assert line.startswith(f"pydarknet: error: {data}: 3 faults in the training set's labels or images, the first: "
                           f"{images / 'train_0000.txt'}:2: class 5 out of range (classes=3); ")
    assert f"`pydarknet datasets check {data}` lists them all" in line
    assert not (tmp_path / "backup").exists()


def test_show_draws_the_boxes_and_counts_them(tmp_path, capsys):
    data = write_shapes(tmp_path / "shapes", train=1, valid=1, seed=5)
    picture = tmp_path / "labels.png"
    code, out, err = run_command(capsys, "datasets", "show", data, "-out", picture, "--count", "1")
    assert code == 0, err
    boxes = read_labels(tmp_path / "shapes" / "images" / "train_0000.txt")
    counts = np.bincount(boxes[:, 4].astype(int), minlength=3)
    assert out.splitlines() == [f"1 images, {len(boxes)} boxes, 0 images without boxes", f"  circle: {counts[0]}",
                                f"  square: {counts[1]}", f"  triangle: {counts[2]}",
                                f"{picture}: 1 images and the boxes' sizes"]
    drawn = cv2.imread(str(picture))
    assert drawn.shape == (PANEL + 3 * LINE, TILE + PANEL, 3)   # one tile, padded to the height of the sizes panel
    # and its legend of three names, and that panel
    h, w = cv2.imread(str(tmp_path / "shapes" / "images" / "train_0000.jpg")).shape[:2]
    scale = TILE / max(w, h)
    for x, y, bw, _bh, _cls in boxes:   # the middle of each box's left edge: a class's colour (a box may overlap it)
        left, middle = round((x - bw / 2) * w * scale), round(y * h * scale)
        assert min(np.abs(drawn[middle, left].astype(int) - colour(k, 3)).max() for k in range(3)) <= 2
