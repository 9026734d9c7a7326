"""`pydarknet datasets convert voc|coco|yolo SRC OUT`: small sets of each format, built here with the formats'
quirks (VOC's 1-based pixels and difficult objects, COCO's non-contiguous category ids and crowd regions, an
image without boxes, a box past the image, a missing image), converted, and their labels compared with the truth
worked out by hand."""
import json

import cv2
import numpy as np
import pytest
from conftest import run_command

from pydarknet.files.config import read_data_cfg, read_names
from pydarknet.files.labels import label_path, read_list
from pydarknet.files.annotations import read_data_yaml


def image(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))
    return path


def labels_of(image_path):
    """The converted label file's rows, (class, x, y, w, h) as float64."""
    text = open(label_path(str(image_path))).read()
    return np.array([[float(v) for v in line.split()] for line in text.splitlines()]).reshape(-1, 5)


def converted(capsys, *argv):
    code, out, err = run_command(capsys, "datasets", "convert", *argv)
    assert code == 0, err
    data = read_data_cfg(out.strip())
    return data, err


VOC_OBJECT = ("<object><name>{}</name><difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>"
              "<xmax>{}</xmax><ymax>{}</ymax></bndbox></object>")


def voc_set(root):
    annotations = root / "Annotations"
    annotations.mkdir(parents=True)
    image(root / "JPEGImages" / "a.jpg", 200, 100)
    image(root / "JPEGImages" / "b.jpg", 120, 80)
    objects = [VOC_OBJECT.format("cat", 0, 11, 21, 60, 80),       # 1-based pixels
               VOC_OBJECT.format("dog", 1, 100, 10, 140, 50),     # difficult
               VOC_OBJECT.format("dog", 0, 150, 10, 250, 50)]     # past the right edge: clipped to 200
    (annotations / "a.xml").write_text(f"<annotation><filename>a.jpg</filename><size><width>200</width>"
                                       f"<height>100</height><depth>3</depth></size>{''.join(objects)}</annotation>")
    (annotations / "b.xml").write_text("<annotation><filename>b.jpg</filename><size><width>120</width>"
                                       "<height>80</height></size></annotation>")           # no objects
    (annotations / "c.xml").write_text("<annotation><filename>c.jpg</filename></annotation>")   # no image
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("b\n")


CAT = [0, (35.5 - 1) / 200, (50.5 - 1) / 100, 49 / 200, 59 / 100]    # voc_label.py: centre - 1, over the size
DOG = [1, (175 - 1) / 200, (30 - 1) / 100, 50 / 200, 40 / 100]
HARD_DOG = [1, (120 - 1) / 200, (30 - 1) / 100, 40 / 200, 40 / 100]


def test_voc_boxes_as_voc_label_converts_them(tmp_path, capsys):
    voc_set(tmp_path / "VOC")
    data, err = converted(capsys, "voc", tmp_path / "VOC", tmp_path / "out")
    assert read_names(data.str("names")) == ["cat", "dog"]
    assert data.int("classes") == 2 and data.str("backup").endswith("backup/")
    train, valid = read_list(data.str("train")), read_list(data.str("valid"))
    assert [p.split("/")[-1] for p in train] == ["a.jpg"] and [p.split("/")[-1] for p in valid] == ["b.jpg"]
    np.testing.assert_allclose(labels_of(train[0]), [CAT, DOG], atol=1e-6)
    assert labels_of(valid[0]).shape == (0, 5)   # an image without boxes: a negative
    assert cv2.imread(train[0]).shape == (100, 200, 3)
    assert "a.xml: object 3 (dog): box (150.0, 10.0, 250.0, 50.0) past the image: clipped" in err
    assert "c.xml: its image (c.jpg) is not in" in err
    assert "1 difficult objects left out" in err and "2 problems" in err


def test_voc_keeps_difficult_objects_on_request_and_takes_the_names_given(tmp_path, capsys):
    voc_set(tmp_path / "VOC")
    (tmp_path / "my.names").write_text("dog\n")
    data, err = converted(capsys, "voc", tmp_path / "VOC", tmp_path / "out", "--difficult", "--names",
                          tmp_path / "my.names", "--copy", "--name", "pets")
    assert data.str("names").endswith("pets.names")
    [train] = read_list(data.str("train"))
    hard, dog = np.array(HARD_DOG), np.array(DOG)
    hard[0] = dog[0] = 0
    np.testing.assert_allclose(labels_of(train), [hard, dog], atol=1e-6)
    assert "object 1 (cat): not one of the 1 names: left out" in err
    assert not (tmp_path / "out" / "images" / "a.jpg").is_symlink()


def coco_set(root):
    image(root / "images" / "p.jpg", 200, 100)
    image(root / "images" / "q.png", 100, 50)
    coco = {"categories": [{"id": 90, "name": "bird"}, {"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
            "images": [{"id": 42, "file_name": "p.jpg", "width": 200, "height": 100},
                       {"id": 7, "file_name": "q.png", "width": 100, "height": 50},
                       {"id": 9, "file_name": "gone.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": 1, "image_id": 42, "category_id": 3, "bbox": [10, 20, 50, 40], "iscrowd": 0},
                            {"id": 2, "image_id": 42, "category_id": 90, "bbox": [0, 0, 200, 100], "iscrowd": 1},
                            {"id": 3, "image_id": 42, "category_id": 90, "bbox": [180, 60, 40, 60], "iscrowd": 0},
                            {"id": 4, "image_id": 42, "category_id": 5, "bbox": [1, 1, 5, 5], "iscrowd": 0}]}
    (root / "instances.json").write_text(json.dumps(coco))


def test_coco_categories_in_id_order_crowds_left_out_negatives_kept(tmp_path, capsys):
    coco_set(tmp_path / "coco")
    data, err = converted(capsys, "coco", tmp_path / "coco" / "instances.json", tmp_path / "out", "--images",
                          tmp_path / "coco" / "images", "--valid", "0")
    assert read_names(data.str("names")) == ["dog", "cat", "bird"]
    assert data.str("eval") == "coco"
    assert open(data.str("categories")).read().split() == ["1", "3", "90"]
    train = read_list(data.str("train"))
    assert read_list(data.str("valid")) == []
    assert [p.split("/")[-1] for p in train] == ["p_42.jpg", "q_7.png"]   # detector valid reads the id after '_'
    cat = [1, (10 + 25) / 200, (20 + 20) / 100, 50 / 200, 40 / 100]
    bird = [2, 190 / 200, 80 / 100, 20 / 200, 40 / 100]                 # clipped to the image's corner
    np.testing.assert_allclose(labels_of(train[0]), [cat, bird], atol=1e-6)
    assert labels_of(train[1]).shape == (0, 5)
    assert "annotations[2] (id 3): box (180.0, 60.0, 220.0, 120.0) past the image: clipped" in err
    assert "annotations[3] (id 4): category_id 5 is not in categories: left out" in err
    assert "image 9 (" in err and "gone.jpg): no such file: left out" in err
    assert "1 crowd regions left out" in err


def test_the_split_is_drawn_with_the_seed(tmp_path, capsys):
    for i in range(10):
        image(tmp_path / "coco" / f"{i}.jpg", 40, 30)
    coco = {"categories": [{"id": 1, "name": "x"}], "annotations": [],
            "images": [{"id": i, "file_name": f"{i}.jpg", "width": 40, "height": 30} for i in range(10)]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    lists = []
    for out, seed in (("a", 1), ("b", 1), ("c", 2)):
        data, _ = converted(capsys, "coco", tmp_path / "c.json", tmp_path / out, "--images", tmp_path / "coco",
                            "--valid", "0.3", "--seed", seed)
        lists.append([p.split("/")[-1] for p in read_list(data.str("valid"))])
    assert len(lists[0]) == 3 and lists[0] == lists[1] != lists[2]


def yolo_set(root):
    root.mkdir()
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val  # the validation images\n"
                                    "names:\n  0: apple\n  1: 'pear'\n")
    image(root / "images" / "train" / "x.jpg", 64, 48)
    image(root / "images" / "train" / "y.jpg", 64, 48)              # no label file: a negative
    image(root / "images" / "val" / "x.jpg", 32, 32)                # the same name in another split
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.95 0.5 0.2 0.2\n5 0.5 0.5 0.1 0.1\n")
    (root / "labels" / "val" / "x.txt").write_text("1 0.25 0.75 0.5 0.5\n")


def test_yolo_folder_splits_kept_boxes_clipped(tmp_path, capsys):
    yolo_set(tmp_path / "yolo")
    data, err = converted(capsys, "yolo", tmp_path / "yolo", tmp_path / "out")
    assert read_names(data.str("names")) == ["apple", "pear"]
    train, valid = read_list(data.str("train")), read_list(data.str("valid"))
    assert [p.split("/")[-2:] for p in train] == [["train", "x.jpg"], ["train", "y.jpg"]]
    assert [p.split("/")[-2:] for p in valid] == [["valid", "x.jpg"]]
    np.testing.assert_allclose(labels_of(train[0]), [[0, .5, .5, .2, .2], [1, .925, .5, .15, .2]], atol=1e-6)
    assert labels_of(train[1]).shape == (0, 5)
    np.testing.assert_allclose(labels_of(valid[0]), [[1, .25, .75, .5, .5]], atol=1e-6)
    assert f"{tmp_path / 'yolo' / 'labels' / 'train' / 'x.txt'}:3: class 5 is not one of the 2 names" in err
    assert "x.txt:2: box (0.85, 0.4, 1.05, 0.6) past the image: clipped" in err


@pytest.mark.parametrize("text, names", [("names: [a, 'b c', \"d\"]\n", ["a", "b c", "d"]),
                                         ("nc: 2\nnames:\n- a\n- b\n", ["a", "b"])])
def test_data_yaml_names_in_the_forms_tools_write(tmp_path, text, names):
    (tmp_path / "data.yaml").write_text(text)
    assert read_data_yaml(tmp_path / "data.yaml")["names"] == names


def test_nothing_usable_is_one_error_line(tmp_path, capsys):
    (tmp_path / "VOC" / "Annotations").mkdir(parents=True)
    code, _, err = run_command(capsys, "datasets", "convert", "voc", tmp_path / "VOC", tmp_path / "out")
    assert code == 1 and err.startswith("pydarknet: error: ") and "no Annotations/*.xml" in err
    coco_set(tmp_path / "coco")
    code, _, err = run_command(capsys, "datasets", "convert", "coco", tmp_path / "coco" / "instances.json",
                               tmp_path / "out", "--images", tmp_path)
    assert code == 1 and err.splitlines()[-1].startswith("pydarknet: error: ")
    assert "no usable image (3 problems above)" in err
    (tmp_path / "bad.json").write_text('{"images": [\n}')
    code, _, err = run_command(capsys, "datasets", "convert", "coco", tmp_path / "bad.json", tmp_path / "out",
                               "--images", tmp_path)
    assert code == 1 and f"{tmp_path / 'bad.json'}:2: not JSON" in err and "Traceback" not in err
    (tmp_path / "odd.json").write_text('{"images": [{"id": 1}], "annotations": [], "categories": []}')
    code, _, err = run_command(capsys, "datasets", "convert", "coco", tmp_path / "odd.json", tmp_path / "out",
                               "--images", tmp_path)
    assert code == 1 and err == (f"pydarknet: error: {tmp_path / 'odd.json'}: not a COCO instances file (KeyError: "
                                 f"'file_name'): give COCO's instances_*.json, its images with id and file_name, its "
                                 f"categories with id and name\n")
