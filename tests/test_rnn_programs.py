"""`rnn generate`, `rnn valid`, `rnn train` (pydarknet.programs.rnn) and C's rand() (pydarknet.programs.crand), against
../shared/golden/programs/rnn_generate: darknet's stdout byte for byte for -srand 0 at temperatures 0.7 and 0.5."""
import ctypes
import ctypes.util
import io
import math
import re

import numpy as np
import pytest

from conftest import shared_path
from pydarknet.files.config import DarknetError
from pydarknet.network.network import Network
from pydarknet.programs import rnn
from pydarknet.programs.crand import CRand, parse_draws


@pytest.mark.parametrize("temp", ["0.7", "0.5"])
def test_generate_prints_darknets_text(temp, darknet_products, monkeypatch):
    case = shared_path("golden", "programs", "rnn_generate")
    monkeypatch.chdir(case)
    out = io.BytesIO()
    rnn.generate("net.cfg", "net.weights", length=200, seed_text="The ", temperature=float(temp), srand=0, out=out)
    assert out.getvalue() == (case / f"generate_temp{temp}.txt").read_bytes()


def test_generate_network_outputs_bit_exact(darknet_products):
    """The softmax at each generated character, as the driver dumped it (probs_temp0.7.npy)."""
    case = shared_path("golden", "programs", "rnn_generate")
    text = (case / "generate_temp0.7.txt").read_bytes()[:-1]
    net = rnn.char_network(case / "net.cfg", case / "net.weights", 0.7)
    for c in b"The":
        rnn.predict_char(net, c)
    probs = np.array([rnn.predict_char(net, c) for c in text[3:-1]])
    assert np.array_equal(probs, np.load(case / "probs_temp0.7.npy"))


def test_rand_after_parsing_is_darknets():
    """srand(0), the 65536 draws of parsing the char net, then the sampling draws listed in rand_calls.txt."""
    case = shared_path("golden", "programs", "rnn_generate")
    assert parse_draws(Network(case / "net.cfg", quiet_unused=True)) == 65536
    rng = CRand(0)
    assert rng.rand() == 1804289383
    rng.skip(65534)
    assert rng.rand() == 1999503533     # the last weight's
    draws = [rng.rand() for _ in range(200)]
    assert (draws[0], draws[-1]) == (1665633305, 136343140)


def test_crand_is_glibcs():
    name = ctypes.util.find_library("c")   # glibc: darknet's rand() (pydarknet runs on Linux, as CI)
    assert name, "no C library found"
    libc = ctypes.CDLL(name)
    for seed in (0, 7, 2**31 + 5):
        ours = CRand(seed)
        libc.srand(ctypes.c_uint(seed))
        assert [ours.rand() for _ in range(400)] == [libc.rand() for _ in range(400)]


def test_generate_refuses_a_multi_step_cfg(tmp_path):
    cfg = tmp_path / "steps.cfg"
    cfg.write_text("[net]\ninputs=8\ntime_steps=4\n\n[rnn]\noutput=4\n\n[connected]\noutput=8\n\n[softmax]\n")
    weights = tmp_path / "steps.weights"
    from pydarknet.files.weights import save_weights
    save_weights(Network(cfg, quiet_unused=True), weights)
    with pytest.raises(DarknetError, match="batch=1 and time_steps=1"):
        rnn.generate(cfg, weights, length=3, srand=0, out=io.BytesIO())


def test_valid_prints_bits_per_character(darknet_products):
    case = shared_path("golden", "programs", "rnn_generate")
    out = io.StringIO()
    rnn.valid(case / "net.cfg", case / "net.weights", seed_text="", text=b"ab c", out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    net = rnn.char_network(case / "net.cfg", case / "net.weights")
    p = rnn.predict_char(net, ord("a"))[ord("b")]
    bpc = -math.log(p) / np.float32(math.log(2))
    assert lines[0] == f"1 BPC: {bpc:4.4f}   Perplexity: {2 ** bpc:4.4f}    Word Perplexity: {2 ** bpc:4.4f}"
    assert re.fullmatch(r"3 BPC: [\d.]+   Perplexity: [\d.]+    Word Perplexity: [\d.]+", lines[2])


def test_char_batch_rows():
    """Row t*streams + s holds stream s at step t; offsets move on and wrap around the text."""
    symbols = np.frombuffer(b"abcdefg", np.uint8).astype(np.int64)
    offsets = [0, 5]
    x, y = rnn.char_batch(symbols, offsets, 256, 3)
    assert [chr(i) for i in x.argmax(1)] == ["a", "f", "b", "g", "c", "a"]
    assert [chr(i) for i in y.argmax(1)] == ["b", "g", "c", "a", "d", "b"]
    assert offsets == [3, 1]


def test_train_runs_and_saves(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text("[net]\ninputs=128\nbatch=2\ntime_steps=4\nlearning_rate=0.1\nmomentum=0.9\ndecay=0.001\n"
                   "max_batches=3\n\n[rnn]\noutput=16\nactivation=leaky\n\n[connected]\noutput=128\n"
                   "activation=linear\n\n[softmax]\n")
    text = tmp_path / "text.txt"
    text.write_bytes(b"hello world, hello darknet. " * 8)
    err = io.StringIO()
    net = rnn.train(cfg, None, text, backup=tmp_path / "backup", srand=3, err=err)
    lines = err.getvalue().splitlines()
    assert lines[:2] == ["tiny", "Learning Rate: 0.1, Momentum: 0.9, Decay: 0.001, Inputs: 128 8 4"]
    progress = [re.fullmatch(r"(\d+): ([\d.]+), ([\d.]+) avg, 0\.100000 rate, [\d.]+ seconds, ([\d.]+) epochs", line)
                for line in lines[2:]]
    assert all(progress) and [int(m.group(1)) for m in progress] == [1, 2, 3]
    assert float(progress[-1].group(4)) == pytest.approx(3 * 8 / 224, abs=1e-6)
    assert net.seen == 24
    assert (tmp_path / "backup" / "tiny_final.weights").is_file()


def test_cli_rnn_generate(darknet_products):
    from click.testing import CliRunner
    from pydarknet.cli import cli
    case = shared_path("golden", "programs", "rnn_generate")
    result = CliRunner().invoke(cli, ["rnn", "generate", str(case / "net.cfg"), str(case / "net.weights"), "-srand",
                                      "0", "-seed", "The ", "-len", "200", "-temp", "0.5", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == (case / "generate_temp0.5.txt").read_bytes()
