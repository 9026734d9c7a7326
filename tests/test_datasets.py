"""`pydarknet datasets shapes`: the synthetic shapes set in darknet's layout, the same for the same seed."""
import numpy as np

from pydarknet.files.config import read_data_cfg, read_names
from pydarknet.files.labels import read_labels, read_list
from pydarknet.files.datasets import write_shapes
from pydarknet.files.image import load_image


def test_shapes_set_is_darknets_layout_with_absolute_paths(tmp_path, monkeypatch):
    data_file = write_shapes(tmp_path / "shapes", train=6, valid=3, seed=4)
    monkeypatch.chdir(tmp_path / "shapes" / "images")   # any working directory
    data = read_data_cfg(data_file)
    assert data.int("classes") == 3
    assert read_names(data.str("names")) == ["circle", "square", "triangle"]
    assert data.str("backup") == f"{tmp_path / 'shapes' / 'backup'}/"
    train, valid = read_list(data.str("train")), read_list(data.str("valid"))
    assert [p.split("/")[-1] for p in train + valid] == [f"train_{i:04d}.jpg" for i in range(6)] + \
        [f"valid_{i:04d}.jpg" for i in range(3)]
    for path in train + valid:
        assert path.startswith("/")
        im = load_image(path)
        assert im.shape[0] == 3 and im.shape[1] in (120, 144, 160) and im.shape[2] in (160, 192, 224)
        boxes = np.asarray(read_labels(path[:-4] + ".txt"), np.float64).reshape(-1, 5)
        assert 1 <= len(boxes) <= 5
        assert set(boxes[:, 4]) <= {0, 1, 2}
        x, y, w, h = boxes[:, :4].T
        assert (x - w / 2 >= -1e-6).all() and (x + w / 2 <= 1 + 1e-6).all()   # wholly inside the image
        assert (y - h / 2 >= -1e-6).all() and (y + h / 2 <= 1 + 1e-6).all()
        assert (np.minimum(w * im.shape[2], h * im.shape[1]) >= 8).all()


def test_shapes_set_is_the_same_for_a_seed_and_another_for_another(tmp_path):
    sets = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        write_shapes(tmp_path / name, train=3, valid=1, seed=seed)
        sets[name] = [(tmp_path / name / "images" / f).read_bytes()
                      for f in ("train_0002.jpg", "train_0002.txt", "valid_0000.txt")]
    assert sets["a"] == sets["b"] and sets["a"] != sets["c"]
