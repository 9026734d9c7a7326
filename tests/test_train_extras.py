"""The AlexeyAB fork's training-loop extras: -map (and _best.weights), ema_alpha, -show_imgs, random=1's sizes."""
import re
import struct

import cv2
import numpy as np
import pytest
from conftest import ROOT, shared_path
from test_train_cli import CFG, error_line, invoke, toy_dataset

from pydarknet.files.image import class_color
from pydarknet.files.weights import load_weights
from pydarknet.network.network import Network
from pydarknet.tasks.train.run import MAP_COLOUR, Ema, fork_random_size, next_map_iteration, save_augmented

MAP_LINE = re.compile(r"^ mean_average_precision \(mAP@0\.50\) = (\d\.\d{6}) $", re.M)


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return toy_dataset(tmp_path)


@pytest.fixture
def shapes(tmp_path, monkeypatch):
    """A .data file over 16 training and 8 validation images of the shapes set, backup in tmp_path."""
    monkeypatch.chdir(ROOT)
    folder = shared_path("datasets", "shapes")
    for name, count in (("train", 16), ("valid", 8)):
        lines = (folder / f"{name}.txt").read_text().split()[:count]
        (tmp_path / f"{name}.txt").write_text("".join(f"{folder / line}\n" for line in lines))
    data = tmp_path / "shapes.data"
    data.write_text(f"classes=3\ntrain={tmp_path}/train.txt\nvalid={tmp_path}/valid.txt\n"
                    f"names={ROOT}/data/shapes.names\nbackup={tmp_path}/backup\n")
    return data


def test_map_prints_the_forks_line_and_best_weights_score_the_same_in_detector_map(shapes):
    backup = shapes.parent / "backup"
    result = invoke(["train", str(shapes), "cfg/shapes-tiny.cfg", "data/shapes-tiny.weights", "-clear",
                     "--max-batches", "1", "-map", "--workers", "0"])
    assert result.exit_code == 0, result.output
    # burn_in=100: the next evaluation is announced at 100, but the last iteration is always evaluated
    assert "\n (next mAP calculation at 100 iterations) \n1: " in result.stdout
    trained = float(MAP_LINE.search(result.stdout).group(1))
    assert "New best mAP!" in result.stdout
    assert trained > 0.5   # the shipped demo model, after one more step, still finds the shapes
    best = backup / "shapes-tiny_best.weights"
    net = Network("cfg/shapes-tiny.cfg", quiet_unused=True)
    load_weights(net, best)
    assert net.seen == 16
    again = invoke(["detector", "map", str(shapes), "cfg/shapes-tiny.cfg", str(best)])
    assert again.exit_code == 0, again.output
    reported = float(re.search(r"mean average precision \(mAP@0\.50\) = (\d\.\d{6})", again.stdout).group(1))
    assert reported == trained
    chart = cv2.imread(str(backup / "chart.png"))
    assert (chart == MAP_COLOUR).all(axis=2).sum() > 20   # the mAP point and its label


def test_map_schedule_follows_the_fork():
    # 4 epochs of 6000 images in batches of 64 = 375 iterations after the last evaluation
    assert next_map_iteration(1000, 4, 6000, 64, 1000) == 1375
    assert next_map_iteration(0, 4, 100, 64, 50) == 100     # never more often than every 100 iterations
    assert next_map_iteration(0, 4, 6000, 64, 1000) == 1000  # not before burn_in ends


def test_map_runs_on_schedule_in_the_loop(dataset):
    result = invoke(["train", "toy.data", "toy.cfg", "--max-batches", "101", "--workers", "0", "-map",
                     "--no-chart"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    evaluated, iteration = [], None
    for line in lines:
        iteration = int(line.split(":")[0]) if line[:1].isdigit() else iteration
        if line.startswith(" calculation mAP"):
            evaluated.append(iteration)
    # no valid= in toy.data: the train= list; 4 epochs of 6 images are 6 iterations, so every 100; and the last
    assert evaluated == [100, 101]
    assert lines.count(" (next mAP calculation at 100 iterations) ") == 100
    assert lines.count(" (next mAP calculation at 200 iterations) ") == 1
    assert result.stdout.count("New best mAP!") == 2   # the fork keeps a mAP equal to the best (>=)
    result = invoke(["train", "toy.data", "toy.cfg", "backup/toy_final.weights", "-clear", "--max-batches", "1",
                     "-map", "-mAP_epochs", "100", "--no-chart"])
    assert "\n (next mAP calculation at 150 iterations) \n1: " in result.stdout   # 100 epochs of 6 images / 4


def test_map_needs_a_valid_or_train_list(dataset, capsys):
    (dataset / "novalid.data").write_text("classes=2\ntrain=train.txt\nnames=names.txt\nvalid=missing.txt\n")
    assert error_line(["train", "novalid.data", "toy.cfg", "-map"], capsys) == (
        "pydarknet: error: missing.txt: no such image list (named at novalid.data:4)")


def test_ema_follows_the_forks_formula_and_schedule(dataset):
    net = Network("toy.cfg", quiet_unused=True).initialize(seed=3)
    conv = net.layers[0]
    ema = Ema(net, 0.9)
    ema.step(999, 3000)                         # before max_batches / 2: nothing kept
    assert ema.averages is None
    ema.step(1500, 3000)                        # started as a copy, then one update of itself
    w0 = conv.weights[1, 2]
    assert ema.averages[0][1, 2] == np.float32(0.9) * w0 + np.float32(0.100000024) * w0
    conv.weights[1, 2] = w1 = np.float32(0.25)
    before = ema.averages[0][1, 2]
    ema.step(1501, 3000)
    assert ema.averages[0][1, 2] == np.float32(np.float32(0.9) * before + np.float32(0.100000024) * w1)
    assert ema.averages[0][1, 2] != w1
    # by hand: a parameter at 1 when the average starts, then 0 for two updates: 1 -> .9 -> .81 (in float32:
    # .9f = 0.89999998 and 1 - .9f = 0.10000002, so the start 0.89999998 + 0.10000002 = 1 exactly)
    by_hand = Ema(net, 0.9)
    conv.biases[0] = 1
    by_hand.step(1500, 3000)
    conv.biases[0] = 0
    by_hand.step(1501, 3000)
    assert by_hand.averages[1][0] == np.float32(0.89999998)
    by_hand.step(1502, 3000)
    assert by_hand.averages[1][0] == np.float32(0.80999994)
    names = [(layer.index, name) for layer, name in ema.parameters]
    assert names == [(0, "weights"), (0, "biases"), (0, "scales"), (2, "weights"), (2, "biases")]
    version = net.params_version
    ema.step(2000, 3000)                        # max_batches - 1000: the averages become the parameters
    assert conv.weights[1, 2] == ema.averages[0][1, 2] and net.params_version == version + 1
    ema.step(2001, 3000)                        # and stay as they are after that
    assert conv.weights[1, 2] == ema.averages[0][1, 2]


def test_ema_weights_are_saved_beside_last(dataset):
    (dataset / "toy.cfg").write_text(CFG.replace("[net]", "[net]\nema_alpha=0.5"))
    invoke(["train", "toy.data", "toy.cfg", "--max-batches", "1", "--workers", "0"])
    start = bytearray((dataset / "backup" / "toy_final.weights").read_bytes())
    struct.pack_into("<q", start, 12, 98 * 4)   # resume at iteration 98
    (dataset / "start.weights").write_bytes(bytes(start))
    # to 99: the raw weights the average starts from; to 100: the average (started at 99) saved with _last
    invoke(["train", "toy.data", "toy.cfg", "start.weights", "--max-batches", "99", "--workers", "0",
            "--backup", "at99"])
    result = invoke(["train", "toy.data", "toy.cfg", "start.weights", "--max-batches", "100", "--workers", "0"])
    assert result.exit_code == 0, result.output
    nets = {}
    for name, path in (("ema", "backup/toy_ema.weights"), ("last", "backup/toy_last.weights"),
                       ("at99", "at99/toy_final.weights")):
        nets[name] = load_weights(Network("toy.cfg", quiet_unused=True), dataset / path)
    for index in (0, 2):
        ema, last, at99 = (nets[name].layers[index] for name in ("ema", "last", "at99"))
        # 99 >= max_batches / 2 starts the average as a copy; past max_batches - 1000 it is not updated
        assert np.array_equal(ema.weights, at99.weights) and np.array_equal(ema.biases, at99.biases)
        assert not np.array_equal(ema.weights, last.weights)
    # the batch-norm statistics are the current ones, as the fork saves them
    assert np.array_equal(nets["ema"].layers[0].rolling_mean, nets["last"].layers[0].rolling_mean)


def test_save_augmented_draws_each_truth_box_until_the_first_empty_row(tmp_path):
    x = np.full((2, 3, 20, 30), 0.5, np.float32)
    y = np.zeros((2, 4, 5), np.float32)
    y[0, 0] = [0.5, 0.5, 0.4, 0.5, 2]          # pixels 8..21 across (in double, as the fork: 8.9999999), 5..15 down
    y[0, 2] = [0.2, 0.2, 0.2, 0.2, 1]          # after an empty row: not read, as the fork
    save_augmented(tmp_path, 7, x, y, True, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aug_7_0.png", "aug_7_1.png"]
    im = cv2.imread(str(tmp_path / "aug_7_0.png"))
    r, g, b = class_color(2, 3)
    colour = [int(np.clip(np.float32(255) * np.float32(v), 0, 255)) for v in (b, g, r)]
    grey = [127, 127, 127]
    drawn = (im == colour).all(axis=2)
    assert drawn[5, 8:22].all() and drawn[15, 8:22].all() and drawn[5:16, 8].all() and drawn[5:16, 21].all()
    assert drawn.sum() == 2 * 14 + 2 * 9
    assert (im[6:15, 9:21] == grey).all() and (im[2:5, 2:8] == grey).all()
    assert (cv2.imread(str(tmp_path / "aug_7_1.png")) == grey).all()


def test_show_imgs_writes_every_training_image(dataset):
    result = invoke(["train", "toy.data", "toy.cfg", "--max-batches", "2", "--workers", "0", "-show_imgs"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (dataset / "backup").glob("aug_*.png"))
    assert written == sorted(f"aug_{i}_{j}.png" for i in (1, 2) for j in range(4))
    assert cv2.imread(str(dataset / "backup" / "aug_2_3.png")).shape == (32, 32, 3)


def test_fork_random_sizes_are_multiples_of_32_in_its_range():
    rng = np.random.default_rng(0)
    sizes = [fork_random_size(416, 416, 1.4, 32, rng) for _ in range(500)]
    widths = {w for w, h in sizes}
    assert all(w == h and w % 32 == 0 for w, h in sizes)
    # round(416 / 1.4 / 32 + 1) * 32 .. round(416 * 1.4 / 32 + 1) * 32, shrinking past 416 kept at 416
    assert min(widths) == 320 and max(widths) == 608 and 416 in widths and len(widths) == 10
    assert fork_random_size(416, 416, 1.4, 32, rng, largest=True) == (608, 608)
    assert fork_random_size(608, 320, 1.2, 32, rng, largest=True) == (768, 416)
    assert all(w >= 32 and h >= 32 for w, h in (fork_random_size(32, 32, 2.0, 32, rng) for _ in range(50)))


def test_pjreddie_random_sizes_are_its_range_scaled_to_the_cfg():
    """pjreddie's random=1 (examples/detector.c): `(rand() % 10 + 10) * 32`, 320-608 for its 416 x 416 cfgs, each
    of the ten sizes; pydarknet keeps that range relative to the cfg's size (0.77-1.46, README): 128-224 for a
    160 x 160 cfg, the height following the cfg's aspect."""
    from types import SimpleNamespace

    from pydarknet.tasks.train.run import random_size
    rng = np.random.default_rng(0)
    net = SimpleNamespace()
    sizes = {random_size(net, 416, 416, rng) for _ in range(500)}
    assert sizes == {(32 * k, 32 * k) for k in range(10, 20)}
    assert {w for w, _ in (random_size(net, 160, 160, rng) for _ in range(500))} == {128, 160, 192, 224}
    assert {(w, h) for w, h in (random_size(net, 416, 320, rng) for _ in range(500)) if w == 416} == {(416, 320)}


def test_fork_random_resizes_training_of_an_alexeyab_network(dataset):
    ab = CFG.replace("learning_rate=0.01", "learning_rate=0.001").replace("random=0", "random=0\nscale_x_y=1.0")
    (dataset / "ab.cfg").write_text(ab.replace("random=0", "random=1"))
    (dataset / "ab64.cfg").write_text(ab.replace("width=32", "width=64").replace("height=32", "height=64"))
    resized = invoke(["train", "toy.data", "ab.cfg", "--max-batches", "11", "--workers", "0", "-show_imgs"])
    assert resized.exit_code == 0, resized.output
    shapes = {i: cv2.imread(str(dataset / "backup" / f"aug_{i}_0.png")).shape[:2] for i in (1, 10, 11)}
    # the first size: round(32 * 1.4 / 32 + 1) * 32; the last 100 iterations (all 11 here) take it too
    assert shapes[1] == shapes[10] == shapes[11] == (64, 64)
    assert resized.stderr.count("Resizing, random_coef = 1.40 \n\n 64 x 64 ") == 2   # at iterations 1 and 11
    native = invoke(["train", "toy.data", "ab64.cfg", "--max-batches", "11", "--workers", "0"])

    def losses(result):
        return [line.split(", ")[0] for line in result.stdout.splitlines()]
    # a resized network trains as one made at that size (and without the fork's CPU NaN)
    assert losses(resized) == losses(native) and len(losses(native)) == 11
    assert "nan" not in resized.stdout


def test_random_is_a_float_for_alexeyab_networks_an_int_for_pjreddies(tmp_path):
    """The fork reads [yolo] random= as a float (random=1.2: sizes within x1.2), pjreddie as an int."""
    path = tmp_path / "r.cfg"
    path.write_text(CFG.replace("random=0", "random=1.2"))
    assert Network(path, darknet="pjreddie").layers[-1].random == 1
    assert Network(path, darknet="ab").layers[-1].random == pytest.approx(1.2)


def test_the_same_command_and_seed_give_the_same_weights_byte_for_byte(shapes):
    """README (Training): the same command and seed give the same weights, byte for byte; here the second demo's
    network (mosaic, CIoU) from scratch, 3 iterations with the default two loader workers, twice with --seed 1
    and once with --seed 2 (which must differ: the seed does drive the augmentation)."""
    files = {}
    for run, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        result = invoke(["train", str(shapes), "cfg/shapes-v4tiny.cfg", "--max-batches", "3", "--seed", seed,
                         "--backup", str(shapes.parent / run), "--no-chart"])
        assert result.exit_code == 0, result.output
        files[run] = (shapes.parent / run / "shapes-v4tiny_final.weights").read_bytes()
    assert files["a"] == files["b"] and files["a"] != files["c"]
