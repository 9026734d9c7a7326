"""Hostile files never crash the process: a property-based fuzzer (hypothesis) of the JPEG decoder, the cfg, .data
and .names parsers and the weights reader. Each mutates real files (byte flips, truncations, insertions, JPEG
segments spliced between files, cfg values replaced by extreme ones, garbled weights headers) and drives the real
entry points: every input ends in a result or a DarknetError (one `pydarknet: error:` line on the command line),
never another exception, a crash or a hang.

CI runs a few dozen inputs per target, derandomized (the same inputs on every run). The long campaign:

    PYDARKNET_FUZZ_EXAMPLES=3000 python3 -m pytest -q tests/test_fuzz.py

runs that many inputs per target (new ones on every run; a failure prints the @reproduce_failure line that
replays it) in this process, then again in a subprocess with Numba's bounds checking on
(NUMBA_BOUNDSCHECK=1, which changes the compiled code: a cache of its own in a temporary folder), where a kernel's
out-of-bounds read is an IndexError instead of a silent read of other memory. Every input that found a bug is kept
in tests/data/fuzz/ and replayed by test_found_inputs_end_in_a_result_or_an_error (images too large for memory:
tests/data/fuzz/memory/, replayed in a process with its memory limited).
"""
import os
import re
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import DATA, ROOT, run_command as run
from pydarknet.files.config import DarknetError, load_names, read_cfg, read_data_cfg, read_names
from pydarknet.files.image import load_image
from pydarknet.files.jpeg import JPEGError, decode_jpeg
from pydarknet.network.network import Network

EXAMPLES = int(os.environ.get("PYDARKNET_FUZZ_EXAMPLES", "0"))
FOUND = DATA / "fuzz"
SHAPES_CFG, SHAPES_WEIGHTS = ROOT / "cfg/shapes-tiny.cfg", ROOT / "data/shapes-tiny.weights"

# CI sees the same inputs on every run, a long campaign new ones; no database: nothing is written beside the tests
fuzz = settings(max_examples=EXAMPLES or 40, deadline=None, derandomize=not EXAMPLES, database=None,
                print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------------------------
# Seeds: real files, and small JPEGs of every coding OpenCV writes
# ---------------------------------------------------------------------------------------------------------

def _encoded_jpegs():
    """Small JPEGs in each chroma subsampling, baseline and progressive, with and without restart markers, grey."""
    rng = np.random.default_rng(0)
    colour = cv2.GaussianBlur(rng.integers(0, 256, (29, 37, 3), dtype=np.uint8), (5, 5), 0)
    out = []
    for sampling in ("444", "422", "420", "411", "440"):
        for progressive in (0, 1):
            params = [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{sampling}"),
                      cv2.IMWRITE_JPEG_PROGRESSIVE, progressive, cv2.IMWRITE_JPEG_QUALITY, 90]
            out.append(cv2.imencode(".jpg", colour, params)[1].tobytes())
    out.append(cv2.imencode(".jpg", colour, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes())
    out.append(cv2.imencode(".jpg", colour[:, :, 0], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes())
    return out


SOI = b"\xff\xd8"
JPEGS = ([(ROOT / "data" / name).read_bytes() for name in ("dog.jpg", "shapes.jpg")]
         + [p.read_bytes() for p in sorted((DATA / "decode").glob("*.jpg"))] + _encoded_jpegs())
CFGS = sorted((ROOT / "cfg").glob("*.cfg"))
DATAS = sorted((ROOT / "cfg").glob("*.data"))
NAMES = sorted((ROOT / "data").glob("*.names"))

# cfg values a mutation puts in place of a real one: edges of the ranges a layer checks, sizes too large for
# memory or for an int64, and what is no number or no list
VALUES = ["0", "1", "-1", "2", "3", "7", "99999999", "-99999999", "2147483648", "99999999999999999999", "1e40",
          ".5", "nan", "x", "1,2,", "-1,-2", "0,0,0", "1,2,3,4,5,6,7,8,9", "linear", "logistic"]
SECTIONS = ["net", "convolutional", "maxpool", "avgpool", "route", "shortcut", "upsample", "yolo", "region",
            "detection", "connected", "softmax", "dropout", "reorg", "local", "crop", "cost", "batchnorm", "rnn",
            "gru", "lstm", "crnn", "deconvolutional", "sam", "scale_channels", "reorg3d", "local_avgpool",
            "normalization", "l2norm", "logistic", "empty", "silence", "implicit_add", "gaussian_yolo", "frob"]


# ---------------------------------------------------------------------------------------------------------
# Byte mutations
# ---------------------------------------------------------------------------------------------------------

def _position(draw, data):
    return draw(st.integers(0, max(len(data) - 1, 0)))


def _flip(draw, data, seeds):
    at = _position(draw, data)
    return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]


def _truncate(draw, data, seeds):
    return data[:_position(draw, data)]


def _insert(draw, data, seeds):
    at = _position(draw, data)
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


def _delete(draw, data, seeds):
    at = _position(draw, data)
    return data[:at] + data[at + draw(st.integers(1, 64)):]


BYTE_MUTATIONS = [_flip, _truncate, _insert, _delete]


def _mutated(draw, data, mutations, seeds=()):
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.sampled_from(mutations))(draw, data, seeds)
    return data


# ---------------------------------------------------------------------------------------------------------
# JPEG: segment-aware mutations on top of the byte ones
# ---------------------------------------------------------------------------------------------------------

def jpeg_segments(data):
    """(start, end) of each marker segment (its entropy-coded data included), in file order."""
    starts = [i for i in range(len(data) - 1)
              if data[i] == 0xFF and data[i + 1] not in (0x00, 0xFF) and not 0xD0 <= data[i + 1] <= 0xD7]
    return list(zip(starts, starts[1:] + [len(data)]))


def _header_position(draw, data):
    """A byte inside a marker segment's header (where a flip changes the meaning most)."""
    segments = jpeg_segments(data)
    if not segments:
        return _position(draw, data)
    start, end = draw(st.sampled_from(segments))
    length = struct.unpack(">H", data[start + 2:start + 4])[0] if start + 4 <= len(data) else 0
    return draw(st.integers(start, max(start, min(end, start + 2 + length) - 1)))


def _header_field(draw, data, seeds):
    at = _header_position(draw, data)
    value = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 8, 15, 16, 17, 0x11, 0x22, 0x41, 0x7F, 0x80, 0xFE, 0xFF]))
    return data[:at] + bytes([value]) + data[at + 1:]


def _marker(draw, data, seeds):
    at = _position(draw, data)
    code = draw(st.sampled_from([0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0xC0, 0xC2, 0xDD, 0xD0, 0xD7, 0xE0, 0xEE, 0xDC]))
    return data[:at] + bytes([0xFF, code]) + data[at:]


def _splice(draw, data, seeds):
    """A segment of another seed (a frame header of another subsampling, other tables) in place of one of ours,
    or added before it."""
    ours, theirs = jpeg_segments(data), jpeg_segments(donor := draw(st.sampled_from(seeds)))
    if not ours or not theirs:
        return data
    start, end = draw(st.sampled_from(ours))
    d0, d1 = draw(st.sampled_from(theirs))
    return data[:start] + donor[d0:d1] + (data[start:] if draw(st.booleans()) else data[end:])


def _reorder(draw, data, seeds):
    """Two segments swapped, or one dropped or repeated."""
    segments = jpeg_segments(data)
    if len(segments) < 2:
        return data
    i, j = sorted(draw(st.lists(st.integers(0, len(segments) - 1), min_size=2, max_size=2, unique=True)))
    (a0, a1), (b0, b1) = segments[i], segments[j]
    how = draw(st.sampled_from(["swap", "drop", "repeat"]))
    if how == "swap":
        return data[:a0] + data[b0:b1] + data[a1:b0] + data[a0:a1] + data[b1:]
    if how == "drop":
        return data[:a0] + data[a1:]
    return data[:a1] + data[a0:a1] + data[a1:]


JPEG_MUTATIONS = BYTE_MUTATIONS + [_header_field, _header_field, _marker, _splice, _reorder]


@st.composite
def hostile_jpegs(draw):
    """A seed mutated after its SOI marker (a file without one is plainly no JPEG: nothing to explore)."""
    return SOI + _mutated(draw, draw(st.sampled_from(JPEGS))[2:], JPEG_MUTATIONS, JPEGS)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@fuzz
@given(data=hostile_jpegs())
def test_jpeg_decoder_ends_in_pixels_or_a_jpeg_error(data):
    try:
        rgb = decode_jpeg(data, "fuzz.jpg")
    except JPEGError:
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@fuzz
@given(data=hostile_jpegs())
def test_load_image_ends_in_an_image_or_an_image_error(tmp_path_factory, data):
    path = _write(tmp_path_factory.mktemp("jpeg"), "fuzz.jpg", data)
    try:
        im = load_image(path)
    except DarknetError as e:
        assert str(path) in str(e)
        return
    assert im.dtype == np.float32 and im.ndim == 3 and im.shape[0] == 3


# ---------------------------------------------------------------------------------------------------------
# Text files: line and value mutations on top of the byte ones
# ---------------------------------------------------------------------------------------------------------

def _lines(data):
    return data.split(b"\n")


def _value(draw, data, seeds):
    """One `key=value` line's value replaced by an edge value."""
    lines = _lines(data)
    options = [i for i, line in enumerate(lines) if b"=" in line]
    if not options:
        return data
    i = draw(st.sampled_from(options))
    key = lines[i].split(b"=", 1)[0]
    lines[i] = key + b"=" + draw(st.sampled_from(VALUES)).encode()
    return b"\n".join(lines)


def _arith(draw, data, seeds):
    """One number of a `key=value` line changed arithmetically: a size one off (no longer divisible), negated,
    scaled far up."""
    lines = _lines(data)
    numbers = [i for i, line in enumerate(lines) if re.search(rb"=[-+]?\d", line)]
    if not numbers:
        return data
    i = draw(st.sampled_from(numbers))
    number = re.search(rb"[-+]?\d+", lines[i].split(b"=", 1)[1])
    value = int(number[0])
    new = draw(st.sampled_from([value + 1, value - 1, -value, value * 1000, value * 10 ** 9, 0]))
    key, rest = lines[i].split(b"=", 1)
    lines[i] = key + b"=" + rest[:number.start()] + str(new).encode() + rest[number.end():]
    return b"\n".join(lines)


def _section(draw, data, seeds):
    """A section header turned into another type, or a new empty section of some type inserted."""
    lines = _lines(data)
    at = draw(st.integers(0, len(lines)))
    header = f"[{draw(st.sampled_from(SECTIONS))}]".encode()
    headers = [i for i, line in enumerate(lines) if line.startswith(b"[")]
    if headers and draw(st.booleans()):
        lines[draw(st.sampled_from(headers))] = header
    else:
        lines.insert(at, header)
    return b"\n".join(lines)


def _line_edit(draw, data, seeds):
    """A line dropped, repeated, or moved elsewhere."""
    lines = _lines(data)
    i = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["drop", "repeat", "move"]))
    line = lines.pop(i) if how != "repeat" else lines[i]
    if how != "drop":
        lines.insert(draw(st.integers(0, len(lines))), line)
    return b"\n".join(lines)


def _key(draw, data, seeds):
    """A known option of another line added to some section (options the section's layer does not expect)."""
    lines = _lines(data)
    options = [line.split(b"=", 1)[0] for line in lines if b"=" in line]
    if not options:
        return data
    line = draw(st.sampled_from(options)) + b"=" + draw(st.sampled_from(VALUES)).encode()
    lines.insert(draw(st.integers(0, len(lines))), line)
    return b"\n".join(lines)


TEXT_MUTATIONS = BYTE_MUTATIONS + [_value, _value, _arith, _arith, _section, _line_edit, _key]


@st.composite
def hostile_text(draw, seeds, mutations):
    return _mutated(draw, draw(st.sampled_from(seeds)).read_bytes(), mutations)


@fuzz
@given(text=hostile_text(CFGS, TEXT_MUTATIONS))
def test_cfg_ends_in_a_network_or_a_cfg_error(tmp_path_factory, text):
    path = _write(tmp_path_factory.mktemp("cfg"), "fuzz.cfg", text)
    try:
        read_cfg(path)
        net = Network(path, quiet_unused=True)
    except DarknetError as e:
        assert str(path) in str(e)
        return
    assert net.layers


@fuzz
@given(text=hostile_text(DATAS, TEXT_MUTATIONS))
def test_data_file_ends_in_names_or_an_error(tmp_path_factory, text):
    path = _write(tmp_path_factory.mktemp("data"), "fuzz.data", text)
    try:
        load_names(path, read_data_cfg(path).int("classes", 0), "fuzz.cfg")
    except DarknetError:   # naming the .data file, or the names file it names
        pass


@fuzz
@given(text=hostile_text(NAMES, BYTE_MUTATIONS))
def test_names_file_ends_in_names(tmp_path_factory, text):
    names = read_names(_write(tmp_path_factory.mktemp("names"), "fuzz.names", text))
    assert all(isinstance(name, str) and "\n" not in name for name in names)


# ---------------------------------------------------------------------------------------------------------
# Weights: headers garbled, files cut and extended, bodies flipped
# ---------------------------------------------------------------------------------------------------------

HEADER_INTS = [0, 1, 2, 5, 9, 10, 999, 1000, 1001, 65535, -1, -2, 2 ** 31 - 1, -2 ** 31]


def _header_int(draw, data, seeds):
    at = draw(st.sampled_from([0, 4, 8, 12, 16]))
    return data[:at] + struct.pack("<i", draw(st.sampled_from(HEADER_INTS))) + data[at + 4:]


def _cut_short(draw, data, seeds):
    """Cut inside the header, or anywhere in the body."""
    return data[:draw(st.one_of(st.integers(0, 24), st.integers(0, len(data))))]


def _extend(draw, data, seeds):
    return data + draw(st.binary(min_size=1, max_size=64))


def _float(draw, data, seeds):
    """A parameter replaced by an extreme float32 (NaN, infinity, a negative variance)."""
    if len(data) < 24:
        return data
    at = 20 + 4 * draw(st.integers(0, (len(data) - 24) // 4))
    value = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 3e38, -3e38]))
    return data[:at] + struct.pack("<f", value) + data[at + 4:]


WEIGHTS_MUTATIONS = [_header_int, _header_int, _cut_short, _extend, _float, _flip]


@fuzz
@given(data=st.data())
def test_weights_end_in_a_loaded_network_or_a_weights_error(tmp_path_factory, data):
    weights = _mutated(data.draw, SHAPES_WEIGHTS.read_bytes(), WEIGHTS_MUTATIONS)
    path = _write(tmp_path_factory.mktemp("weights"), "fuzz.weights", weights)
    net = Network(SHAPES_CFG, quiet_unused=True)
    try:
        net.load(path)
    except DarknetError as e:
        assert str(path) in str(e)


# ---------------------------------------------------------------------------------------------------------
# What the fuzzer found, replayed; the command line's one line
# ---------------------------------------------------------------------------------------------------------

def _replay(path):
    """Run the input through the entry point its extension names; a DarknetError is a fine ending."""
    try:
        if path.suffix == ".jpg":
            load_image(path)
        elif path.suffix == ".cfg":
            Network(path, quiet_unused=True)
        elif path.suffix == ".data":
            read_data_cfg(path)
        elif path.suffix == ".weights":
            cfg = path.with_suffix(".cfg")
            Network(cfg if cfg.exists() else SHAPES_CFG, quiet_unused=True).load(path)
    except DarknetError:
        pass


@pytest.mark.parametrize("path", [p for p in sorted(FOUND.iterdir()) if p.is_file()], ids=lambda p: p.name)
def test_found_inputs_end_in_a_result_or_an_error(path):
    _replay(path)


def test_found_inputs_stay_small():
    assert sum(p.stat().st_size for p in FOUND.rglob("*") if p.is_file()) < 256 << 10


LOAD_UNDER_2_5_GIB = """import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (5 << 29, 5 << 29))
from pydarknet.files.image import ImageError, load_image
try:
    load_image(sys.argv[1])
except ImageError as e:
    print(e)
"""


@pytest.mark.parametrize("path", sorted((FOUND / "memory").iterdir()), ids=lambda p: p.name)
def test_found_images_too_large_for_memory_are_an_image_error(path):
    """tests/data/fuzz/memory: images whose headers claim more pixels than a process limited to 2.5 GiB of address
    space holds (the decoder's planes fit, the float32 image did not: a MemoryError from a kernel before)."""
    proc = subprocess.run([sys.executable, "-c", LOAD_UNDER_2_5_GIB, path], capture_output=True, text=True,
                          env={**os.environ, "NUMBA_NUM_THREADS": "1"}, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"cannot load image {path}: ") and proc.stdout.endswith(" memory\n")


def _one_error_line(err):
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pydarknet: error: "), err
    return lines[0]


def test_a_corrupt_jpeg_given_to_detect_is_one_line(capsys, tmp_path):
    bad = _write(tmp_path, "bad.jpg", JPEGS[1][:200] + b"\xff\xd9")
    code, out, err = run(capsys, "detect", SHAPES_CFG, SHAPES_WEIGHTS, bad, "-q")
    assert (code, out) == (1, "")
    assert str(bad) in _one_error_line(err)


def test_a_cfg_whose_kernel_is_too_large_for_memory_is_one_line(capsys):
    cfg = FOUND / "cfg-kernel-too-large.cfg"
    code, out, err = run(capsys, "summary", cfg, "-q")
    assert (code, out) == (1, "")
    assert _one_error_line(err) == (
        f"pydarknet: error: {cfg}:6: [convolutional] layer 0: its parameters do not fit in memory (a parameter "
        f"array of 1.79e+09 GiB (limit 4 GiB)): check the layer's sizes in {cfg}")


def test_a_garbled_weights_header_is_one_line(capsys, tmp_path):
    weights = _write(tmp_path, "bad.weights", struct.pack("<3i", 0, 2, 0) + b"\x01")
    code, out, err = run(capsys, "detect", SHAPES_CFG, weights, ROOT / "data/shapes.jpg", "-q")
    assert (code, out) == (1, "")
    assert str(weights) in _one_error_line(err)


def test_a_binary_data_file_is_one_line(capsys, tmp_path):
    data = _write(tmp_path, "bad.data", b"classes=3\nnames=\xff\xfe\x00\x01\n")
    code, out, err = run(capsys, "detector", "test", data, SHAPES_CFG, SHAPES_WEIGHTS, ROOT / "data/shapes.jpg", "-q")
    assert (code, out) == (1, "")
    assert str(data) in _one_error_line(err)


def long_campaign_under_numba_boundscheck(tmp_path):
    """The fuzzers again in a new process whose kernels check every index (compiled afresh into a cache of their
    own: minutes). A hang dumps every thread's stack after 120 s."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o",
                           "faulthandler_timeout=120", __file__, "-k", "end_in or ends_in"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


# A test of the long campaign only (PYDARKNET_FUZZ_EXAMPLES=N), and not inside the bounds-checked process itself:
# in CI's short runs it is not collected at all, rather than skipped.
if EXAMPLES and os.environ.get("NUMBA_BOUNDSCHECK") != "1":
    test_long_campaign_under_numba_boundscheck = long_campaign_under_numba_boundscheck
