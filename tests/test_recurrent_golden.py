"""The recurrent and [deconvolutional] golden cases (../shared/golden/forward_rnn, pjreddie's darknet built with
gcc 12.2 -Ofast): every layer's buffer after one forward, and after a second forward on the same network (the
recurrent state carried over), computed from darknet's own inputs.

With darknet's exact-order products every layer is bit for bit darknet's, its [softmax] included when computed
as that build vectorises it (net.softmax_lanes); the scalar softmax of golden/forward's build differs in the last
bit of most outputs (measured: 3.4e-8 at most, under an ulp of a probability in [0.5, 1)).
"""
import json

import numpy as np
import pytest

from conftest import SHARED, shared_path
from pydarknet.files.config import CfgError
from pydarknet.network.network import Network

CASES = ["rnn_slim", "gru_slim", "lstm_slim", "crnn_slim", "deconv_slim"]


def run_calls(case_dir, softmax_lanes=True):
    """Load the case, run input.npy (then input2.npy where there is one); yield (file key, net) after each."""
    net = Network(case_dir / "net.cfg", quiet_unused=True)
    net.load(case_dir / "net.weights")
    net.softmax_lanes = softmax_lanes
    for name, key in (("input.npy", "file"), ("input2.npy", "file2")):
        if (case_dir / name).is_file():
            net.forward(np.load(case_dir / name).reshape((-1,) + net.input_shape))
            yield key, net


def worst_layer(case_dir, key, net):
    """(scaled error, layer index, type) of the layer furthest from darknet's buffer."""
    worst = (0.0, None, None)
    for entry in json.loads((case_dir / "layers.json").read_text()):
        ref = np.load(case_dir / entry[key]).reshape(-1)
        out = net.layers[entry["index"]].output.reshape(-1)
        assert out.size == ref.size, f"layer {entry['index']}: {out.size} values, darknet {ref.size}"
        err = float((np.abs(out.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref))).max())
        worst = max(worst, (err, entry["index"], entry["type"]), key=lambda w: w[0])
    return worst


@pytest.mark.parametrize("case", CASES)
def test_forward_bit_exact(case, darknet_products):
    case_dir = shared_path("golden", "forward_rnn", case)
    for key, net in run_calls(case_dir):
        err, index, kind = worst_layer(case_dir, key, net)
        assert err == 0, f"{key}: layer {index} ({kind}) differs from darknet by {err:.3g} (scaled)"


@pytest.mark.parametrize("case", ["rnn_slim", "lstm_slim"])
def test_forward_scalar_softmax_within_an_ulp(case, darknet_products):
    case_dir = shared_path("golden", "forward_rnn", case)
    for key, net in run_calls(case_dir, softmax_lanes=False):
        err, index, kind = worst_layer(case_dir, key, net)
        assert err <= 2.0 ** -24, f"{key}: layer {index} ({kind}) off by {err:.3g}"
        assert err > 0   # the scalar loop is the other build's: its last bits differ


def test_state_carries_across_calls():
    """A second call from a fresh network (zero state) gives another answer than after the first call."""
    case_dir = shared_path("golden", "forward_rnn", "gru_slim")
    net = Network(case_dir / "net.cfg", quiet_unused=True).load(case_dir / "net.weights")
    fresh = net.forward(np.load(case_dir / "input2.npy").reshape(-1, 256, 1, 1)).copy()
    ref = np.load(case_dir / "out2_004.npy").reshape(fresh.shape)
    assert np.abs(fresh - ref).max() > 1e-3


def write_cfg(tmp_path, body, net="inputs=16\ntime_steps=2"):
    path = tmp_path / "bad.cfg"
    path.write_text(f"[net]\n{net}\n\n{body}\n")
    return path


@pytest.mark.parametrize("body, words", [
    ("[rnn]\noutput=0", "output=0 must be positive"),
    ("[gru]\noutput=-3", "output=-3 must be positive"),
    ("[lstm]\noutput=0", "output=0 must be positive"),
    ("[rnn]\noutput=4\nactivation=foo", "unknown activation 'foo'"),
    ("[deconvolutional]\nfilters=0", "must be positive"),
])
def test_bad_cfg_values(tmp_path, body, words):
    net = "width=8\nheight=8\nchannels=3" if "deconv" in body else "inputs=16\ntime_steps=2"
    with pytest.raises(CfgError) as error:
        Network(write_cfg(tmp_path, body, net), quiet_unused=True)
    message = str(error.value)
    assert words in message and "bad.cfg:" in message and "\n" not in message


def test_time_steps_must_be_positive(tmp_path):
    with pytest.raises(CfgError, match="time_steps=0 must be positive"):
        Network(write_cfg(tmp_path, "[rnn]\noutput=4", "inputs=16\ntime_steps=0"), quiet_unused=True)


def test_crnn_filters(tmp_path):
    with pytest.raises(CfgError, match="hidden_filters=0 must be positive"):
        Network(write_cfg(tmp_path, "[crnn]\nhidden_filters=0\noutput_filters=2", "width=8\nheight=8\nchannels=3"),
                quiet_unused=True)


def test_deconv_padding_that_leaves_no_output(tmp_path):
    with pytest.raises(CfgError, match="padding=5 leaves no output"):
        Network(write_cfg(tmp_path, "[deconvolutional]\nfilters=2\nsize=2\nstride=1\npadding=5",
                          "width=8\nheight=8\nchannels=3"), quiet_unused=True)


def test_rows_must_split_into_steps(tmp_path):
    net = Network(write_cfg(tmp_path, "[rnn]\noutput=4", "inputs=16\ntime_steps=3"), quiet_unused=True)
    with pytest.raises(CfgError, match="time_steps=3"):
        net.forward(np.zeros((4, 16, 1, 1), np.float32))


def test_cases_present():
    if not (SHARED / "golden" / "forward_rnn").is_dir():
        pytest.skip("needs ../shared/golden/forward_rnn (the shared reference data is not beside the project)")
    for case in CASES:
        assert (SHARED / "golden" / "forward_rnn" / case / "layers.json").is_file()
