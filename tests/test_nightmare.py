"""`nightmare` (pydarknet.programs.nightmare) against ../shared/golden/programs/nightmare: darknet's stdout, the
network-input gradient of every iteration, the float image it saved after each round and the JPEG file itself,
bit for bit (darknet's exact-order products), for the plain, batch-norm and multi-octave/multi-layer/flip/two-round
runs; darknet's JPEG encoder (pydarknet.files.jpeg_write) on its own; and -zoom, -rotate and -prefix (no golden run has
them) against darknet's nightmare.c and image.c arithmetic, written out in this file."""
import io
import math

import cv2
import numpy as np
import pytest

from conftest import shared_path
from pydarknet.files.config import DarknetError
from pydarknet.files.image import load_image
from pydarknet.files.jpeg_write import encode_jpeg
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


# -zoom, -rotate and -prefix: no darknet golden run has them, so the rounds are checked against darknet's
# examples/nightmare.c as written: after saving round e, `if(rotate) im = rotate_image(im, rotate)` (radians, the
# float -rotate), then `crop_image(im, im.w * (1. - zoom)/2., im.h * (1.-zoom)/2., im.w*zoom, im.h*zoom)` resized
# back to im.w x im.h with resize_image; -prefix names the file "%s/%s_%s_%d_%06d" (prefix, image, cfg, LAYER,
# round). The helpers below are darknet's image.c functions, pixel by pixel in C's float/double arithmetic.

F32 = np.float32


def darknet_crop(im, dx, dy, w, h):
    """crop_image: coordinates outside the image clamped to its edge."""
    c, ih, iw = im.shape
    out = np.empty((c, h, w), F32)
    for j in range(h):
        for i in range(w):
            out[:, j, i] = im[:, min(max(j + dy, 0), ih - 1), min(max(i + dx, 0), iw - 1)]
    return out


def darknet_resize(im, w, h):
    """resize_image: a horizontal then a vertical linear pass, scales (src - 1) / (dst - 1), all in float."""
    c, ih, iw = im.shape
    w_scale, h_scale = F32(iw - 1) / F32(w - 1), F32(ih - 1) / F32(h - 1)
    part = np.empty((c, ih, w), F32)
    for col in range(w):
        if col == w - 1 or iw == 1:
            part[:, :, col] = im[:, :, iw - 1]
        else:
            sx = F32(col) * w_scale
            ix = int(sx)
            dx = sx - F32(ix)
            part[:, :, col] = (F32(1) - dx) * im[:, :, ix] + dx * im[:, :, ix + 1]
    out = np.empty((c, h, w), F32)
    for row in range(h):
        sy = F32(row) * h_scale
        iy = int(sy)
        dy = sy - F32(iy)
        out[:, row] = (F32(1) - dy) * part[:, iy]
        if row != h - 1 and ih != 1:
            out[:, row] += dy * part[:, iy + 1]
    return out


def darknet_rotate(im, rad, as_float=True):
    """rotate_image(im, float rad): each pixel (x, y) takes the bilinear_interpolate value at
    rx = cos(rad)*(x-cx) - sin(rad)*(y-cy) + cx, ry = sin(rad)*(x-cx) + cos(rad)*(y-cy) + cy (double, stored as
    float), cx = w/2., cy = h/2.; get_pixel_extend gives 0 outside the image."""
    c, h, w = im.shape
    rad = float(F32(rad)) if as_float else rad
    cx, cy = F32(w / 2.0), F32(h / 2.0)
    one = F32(1)

    def at(x, y):
        return im[:, y, x] if 0 <= x < w and 0 <= y < h else np.zeros(c, F32)

    out = np.empty_like(im)
    for y in range(h):
        for x in range(w):
            ox, oy = float(F32(x) - cx), float(F32(y) - cy)
            rx = F32(math.cos(rad) * ox - math.sin(rad) * oy + float(cx))
            ry = F32(math.sin(rad) * ox + math.cos(rad) * oy + float(cy))
            ix, iy = math.floor(rx), math.floor(ry)
            dx, dy = rx - F32(ix), ry - F32(iy)
            out[:, y, x] = ((one - dy) * (one - dx) * at(ix, iy) + dy * (one - dx) * at(ix, iy + 1)
                            + (one - dy) * dx * at(ix + 1, iy) + dy * dx * at(ix + 1, iy + 1))
    return out


def between_rounds(im, zoom, rotate):
    """What run_nightmare does to the image after saving a round."""
    if F32(rotate):
        im = darknet_rotate(im, rotate)
    _, h, w = im.shape
    zoom = F32(zoom)
    crop = darknet_crop(im, int(w * (1.0 - float(zoom)) / 2.0), int(h * (1.0 - float(zoom)) / 2.0),
                        int(F32(w) * zoom), int(F32(h) * zoom))
    return darknet_resize(crop, w, h)


def test_darknet_helpers_are_the_identity_where_darknet_is():
    """The test's own image.c: a zoom of 1 and a rotation of 0 give the image back bit for bit, a turn by pi
    mirrors it both ways about (w/2, h/2) (one row and column off the edge: zeros); on a ramp, a zoom of 2 samples
    the crop that runs off both sides (edges repeated), a zoom of .5 stretches the centre half."""
    im = np.random.default_rng(3).random((3, 6, 8), dtype=F32)
    assert np.array_equal(darknet_resize(darknet_crop(im, 0, 0, 8, 6), 8, 6), im)
    assert np.array_equal(darknet_rotate(im, 0.0), im)
    turned = darknet_rotate(im, math.pi)
    assert np.allclose(turned[:, 1:, 1:], im[:, :0:-1, :0:-1], atol=1e-5)
    assert np.abs(turned[:, 0]).max() < 1e-5 and np.abs(turned[:, :, 0]).max() < 1e-5   # sin(float(pi)) != 0
    ramp = np.broadcast_to(np.arange(9, dtype=F32), (1, 5, 9)).copy()   # x = 0..8
    zoomed = between_rounds(ramp, 2.0, 0.0)      # crop x = -4 .. 13 clamped: 0,0,0,0,0..8,8,8,8,8
    row = np.concatenate([np.zeros(4), np.arange(9), np.full(5, 8)])           # 18 wide, sampled every 17/8
    assert zoomed.shape == (1, 5, 9) and (zoomed == zoomed[:, :1]).all()
    assert np.allclose(zoomed[0, 0], np.interp(np.arange(9) * 17 / 8, np.arange(18), row), atol=1e-6)
    half = between_rounds(ramp, 0.5, 0.0)        # crop x = 2 .. 5 (int(9 * .5) = 4 wide), stretched to 9
    assert np.allclose(half[0, 0], np.linspace(2, 5, 9), atol=1e-6)


def run_rounds(tmp_path, monkeypatch, **options):
    """nightmare on the golden case's slim net and 64x48 image; the float image saved each round, the paths."""
    case = shared_path("golden", "programs", "nightmare")
    monkeypatch.chdir(tmp_path)
    saved = []
    write = program.save_image_darknet
    monkeypatch.setattr(program, "save_image_darknet", lambda im, name: saved.append(im.copy()) or write(im, name))
    out = io.StringIO()
    paths = program.nightmare(case / "jnet-conv_slim.cfg", case / "jnet-conv_slim.weights", case / "dog_64x48.png",
                              7, out=out, octaves=1, **options)
    return saved, paths, out.getvalue(), case


@pytest.mark.parametrize("zoom, rotate", [(1.1, 0.0), (0.8, 0.0), (1.0, 0.3), (1.25, -0.45), (0.9, 1.3)])
def test_zoom_and_rotate_between_rounds_as_darknet(zoom, rotate, tmp_path, monkeypatch):
    """No iterations (-iters 0): round e's saved image is the loaded image rotated and zoomed e times, and every
    JPEG written keeps the image's size (darknet resizes the zoomed crop back to it)."""
    saved, paths, _, case = run_rounds(tmp_path, monkeypatch, iters=0, rounds=3, zoom=zoom, rotate_by=rotate)
    assert np.array_equal(saved[0], load_image(case / "dog_64x48.png"))
    for e in range(1, 3):
        expected = between_rounds(saved[e - 1], zoom, rotate)
        assert np.array_equal(saved[e], expected), f"round {e}"
        assert not np.array_equal(saved[e], saved[e - 1])
    for path in paths:
        assert cv2.imread(str(tmp_path / path)).shape == (48, 64, 3)


def test_rotate_is_radians_rounded_to_float():
    """-rotate is darknet's float: 0.3 turns as float32(0.3) = 0.30000001192..., which moves some samples by a
    float32 step from a turn by the double 0.3; pi/2 (radians, not degrees) turns the picture a quarter: pixel
    (x, y) samples (cx - (y - cy), cy + (x - cx)), here im[x - 2, 14 - y] for the 16x12 image."""
    im = np.random.default_rng(5).random((3, 48, 64), dtype=F32)
    assert np.array_equal(program.rotate(im, 0.3), darknet_rotate(im, 0.3))
    assert not np.array_equal(program.rotate(im, 0.3), darknet_rotate(im, 0.3, as_float=False))
    im = im[:, :12, :16]
    quarter = program.rotate(im, math.pi / 2)
    y, x = np.mgrid[1:12, 2:14]
    assert np.allclose(quarter[:, 1:12, 2:14], im[:, x - 2, 14 - y], atol=1e-5)
    assert np.abs(quarter[:, :, :2]).max() < 1e-5   # from x < 0: zeros


def test_rounds_with_iterations_start_from_the_zoomed_turned_image(tmp_path, monkeypatch):
    """With iterations, round 1 is darknet's optimize_picture run from between_rounds(round 0's image), the rand()
    stream going on from where round 0 left it (parse, then 2 + 3 draws per iteration)."""
    from pydarknet.programs.crand import CRand, parse_draws
    saved, _, _, case = run_rounds(tmp_path, monkeypatch, iters=1, rounds=2, zoom=1.2, rotate_by=0.25)
    net = program.load_network(case / "jnet-conv_slim.cfg", case / "jnet-conv_slim.weights", "pjreddie")
    layers = list(net.layers)
    rng = CRand(0)
    rng.skip(parse_draws(net) + 5)
    im = between_rounds(saved[0], 1.2, 0.25)
    assert im.shape == (3, 48, 64)
    assert 7 + rng.rand() % 1 == 7 and rng.rand() % 1 == 0   # -range 1, -octaves 1: layer 7, scale 1
    program.optimize_picture(net, layers, im, 7, F32(1), 0.04, 1.0, 1, rng, io.StringIO())
    assert np.array_equal(saved[1], im)


def test_prefix_names_the_files_as_darknet(tmp_path, monkeypatch):
    """-prefix P: darknet's "%s/%s_%s_%d_%06d" name, printed per round and written under P (which must exist);
    nothing in the working folder."""
    (tmp_path / "dreams").mkdir()
    saved, paths, stdout, _ = run_rounds(tmp_path, monkeypatch, iters=0, rounds=2, prefix="dreams")
    names = [f"dreams/dog_64x48_jnet-conv_slim_7_{e:06d}" for e in range(2)]
    assert paths == [f"{name}.jpg" for name in names]
    assert stdout == "".join(f"{e} {name}\n" for e, name in enumerate(names))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dreams"]
    assert sorted(p.name for p in (tmp_path / "dreams").iterdir()) == [n.split("/")[1] + ".jpg" for n in names]
    for image, path in zip(saved, paths):
        rgb = np.ascontiguousarray((np.clip(image, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0))
        assert (tmp_path / path).read_bytes() == encode_jpeg(rgb, 80)


def test_cli_zoom_rotate_prefix(tmp_path, monkeypatch):
    """The CLI passes -zoom, -rotate and -prefix through: files under the prefix, rounds transformed as darknet."""
    from click.testing import CliRunner
    from pydarknet.cli import cli
    case = shared_path("golden", "programs", "nightmare")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(cli, ["nightmare", str(case / "jnet-conv_slim.cfg"),
                                      str(case / "jnet-conv_slim.weights"), str(case / "dog_64x48.png"), "7",
                                      "-iters", "0", "-rounds", "2", "-zoom", "1.5", "-rotate", "0.5",
                                      "-prefix", "out", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "0 out/dog_64x48_jnet-conv_slim_7_000000\n1 out/dog_64x48_jnet-conv_slim_7_000001\n"
    first = load_image(case / "dog_64x48.png")
    expected = between_rounds(first, 1.5, 0.5)
    rgb = np.ascontiguousarray((expected * 255).astype(np.uint8).transpose(1, 2, 0))
    assert (tmp_path / "out/dog_64x48_jnet-conv_slim_7_000001.jpg").read_bytes() == encode_jpeg(rgb, 80)
