"""`nightmare` (pydarknet.programs.nightmare) against ../shared/golden/programs/nightmare: darknet's stdout, the
network-input gradient of every iteration, the float image it saved after each round and the JPEG file itself,
bit for bit (darknet's exact-order products), for the plain, batch-norm and multi-octave/multi-layer/flip/two-round
runs; and darknet's JPEG encoder (pydarknet.jpeg_write) on its own."""
import io

import numpy as np
import pytest

from conftest import shared_path
from pydarknet.config import DarknetError
from pydarknet.image import load_image
from pydarknet.jpeg_write import encode_jpeg
from pydarknet.programs import nightmare as program

RUNS = {
    "plain_iters1": ("jnet-conv_slim", dict(iters=1, rounds=1, layers_range=1, octaves=1)),
    "plain": ("jnet-conv_slim", dict(iters=2, rounds=1, layers_range=1, octaves=1)),
    "bn": ("jnet-conv_slim_bn", dict(iters=2, rounds=1, layers_range=1, octaves=1)),
    "multi": ("jnet-conv_slim", dict(iters=3, rounds=2, layers_range=3, octaves=2)),
}


@pytest.mark.parametrize("run", RUNS)
def test_nightmare_as_darknet(run, darknet_products, tmp_path, monkeypatch):
    case = shared_path("golden", "programs", "nightmare")
    cfg, options = RUNS[run]
    monkeypatch.chdir(tmp_path)
    saved = []
    write = program.save_image_darknet
    monkeypatch.setattr(program, "save_image_darknet", lambda im, name: saved.append(im.copy()) or write(im, name))
    out, deltas = io.StringIO(), []
    paths = program.nightmare(case / f"{cfg}.cfg", case / f"{cfg}.weights", case / "dog_64x48.png", 7, out=out,
                              deltas=deltas, **options)
    assert out.getvalue() == (case / run / "darknet_stdout.txt").read_text()
    assert len(deltas) == options["iters"] * options["rounds"]
    for k, delta in enumerate(deltas):
        assert np.array_equal(delta, np.load(case / run / f"delta_iter{k}.npy")), f"iteration {k}"
    for e, (image, path) in enumerate(zip(saved, paths)):
        name = f"dog_64x48_{cfg}_7_{e:06d}"
        assert path == f"{name}.jpg" and (tmp_path / path).is_file()
        assert np.array_equal(image, np.load(case / run / f"{name}.npy")), f"round {e}"
        assert (tmp_path / path).read_bytes() == (case / run / f"{name}.jpg").read_bytes()


def test_normalize_array_as_gcc_compiles_it():
    """(a - mean) * sqrtf(n / sum of squares): the multiplier is a float square root, not 1 / sqrt(variance)."""
    a = np.array([0.25, -1.5, 3.0, 0.75, 2.0], np.float32)
    program.normalize_array(a)
    deviation = np.array([0.25, -1.5, 3.0, 0.75, 2.0], np.float32) - np.float32(0.9)
    scale = np.sqrt(np.float32(5) / np.float32(np.sum(deviation.astype(np.float64) ** 2)))
    assert np.allclose(a, deviation * scale, rtol=1e-6)
    assert abs(float(a.mean())) < 1e-6 and abs(float(a.std()) - 1) < 1e-6


def test_strongest_keeps_outputs_above_mean_plus_std():
    out = np.array([0, 0, 0, 0, 10, 1], np.float32)
    kept = program.strongest(out, 1.0)
    assert kept.tolist() == [0, 0, 0, 0, 10, 0]


def test_layer_out_of_range(tmp_path, monkeypatch):
    case = shared_path("golden", "programs", "nightmare")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DarknetError, match="layer 12 does not exist"):
        program.nightmare(case / "jnet-conv_slim.cfg", case / "jnet-conv_slim.weights", case / "dog_64x48.png", 12,
                          iters=1, octaves=1, out=io.StringIO())


def test_jpeg_encoder_round_trip(tmp_path):
    """A smooth odd-sized picture through darknet's encoder decodes (by darknet's decoder) to within a few grey
    levels, full colour resolution, the edges padded by repetition."""
    y, x = np.mgrid[0:21, 0:13]
    rgb = np.stack([x * 19, y * 12, (x + y) * 7], axis=-1).astype(np.uint8)
    data = encode_jpeg(rgb, 90)
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    (tmp_path / "a.jpg").write_bytes(data)
    decoded = np.round(load_image(tmp_path / "a.jpg") * 255).transpose(1, 2, 0)
    assert decoded.shape == rgb.shape and np.abs(decoded - rgb).max() <= 6


def test_cli_nightmare(darknet_products, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from pydarknet.cli import cli
    case = shared_path("golden", "programs", "nightmare")
    monkeypatch.chdir(tmp_path)
    net = [str(case / "jnet-conv_slim.cfg"), str(case / "jnet-conv_slim.weights")]
    result = CliRunner().invoke(cli, ["nightmare", *net, str(case / "dog_64x48.png"), "7", "-iters", "1", "-rounds",
                                      "1", "-range", "1", "-octaves", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (case / "plain_iters1" / "darknet_stdout.txt").read_text()
    name = "dog_64x48_jnet-conv_slim_7_000000.jpg"
    assert (tmp_path / name).read_bytes() == (case / "plain_iters1" / name).read_bytes()
