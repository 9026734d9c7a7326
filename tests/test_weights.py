"""Reading and writing .weights exactly as darknet does."""
import struct

import numpy as np
import pytest

from conftest import DATA, SHARED
from pydarknet.files.config import DarknetError
from pydarknet.files.weights import WeightsError, load_weights, weights_bytes, save_weights
from pydarknet.network.network import Network

CFG = "[net]\nwidth=8\nheight=8\nchannels=2\n" \
      "[convolutional]\nbatch_normalize=1\nfilters=3\nsize=3\npad=1\nactivation=leaky\n" \
      "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n" \
      "[connected]\noutput=4\nactivation=linear\n"


def small_net(tmp_path, cfg=CFG):
    path = tmp_path / "small.cfg"
    path.write_text(cfg)
    return Network(path)


def floats_needed(net):
    return sum(a.size for layer in net.layers for a in layer.weight_arrays())


def write_file(path, header, values):
    path.write_bytes(header + np.asarray(values, "<f4").tobytes())
    return path


def golden_weight_files():
    cases = []
    for root in (SHARED / "golden" / "forward", DATA / "forward"):
        if root.is_dir():
            cases += [p for p in sorted(root.glob("*/net.weights"))]
    return cases


def test_order_of_a_conv_layer_with_batch_norm(tmp_path):
    net = small_net(tmp_path)
    values = np.arange(floats_needed(net), dtype=np.float32)
    load_weights(net, write_file(tmp_path / "w", struct.pack("<3iq", 0, 2, 0, 1234), values))
    conv = net.layers[0]
    assert net.seen == 1234
    assert list(conv.biases) == [0, 1, 2]
    assert list(conv.scales) == [3, 4, 5]
    assert list(conv.rolling_mean) == [6, 7, 8]
    assert list(conv.rolling_variance) == [9, 10, 11]
    assert conv.weights[0, 0] == 12 and conv.weights.shape == (3, 18)


def test_old_header_with_int32_seen(tmp_path):
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    path = write_file(tmp_path / "w", struct.pack("<3ii", 0, 1, 0, 77), np.ones(floats_needed(net)))
    load_weights(net, path)
    assert net.seen == 77 and np.all(net.layers[1].weights == 1)


def test_transposed_connected_weights(tmp_path):
    cfg = "[net]\nwidth=1\nheight=1\nchannels=3\n[connected]\noutput=2\nactivation=linear\n"
    plain, flipped = small_net(tmp_path, cfg), small_net(tmp_path, cfg)
    w = np.arange(6, dtype=np.float32)
    load_weights(plain, write_file(tmp_path / "a", struct.pack("<3iq", 0, 2, 0, 0), np.r_[0, 0, w]))
    # major > 1000: the file holds the (inputs, outputs) transpose
    load_weights(flipped, write_file(tmp_path / "b", struct.pack("<3ii", 1001, 0, 0, 0),
                                     np.r_[0, 0, w.reshape(2, 3).T.ravel()]))
    assert np.array_equal(plain.layers[0].weights, flipped.layers[0].weights)


def test_short_file_names_layer_and_bytes(tmp_path):
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    path = write_file(tmp_path / "w", struct.pack("<3iq", 0, 2, 0, 0), np.ones(floats_needed(net) - 1))
    with pytest.raises(WeightsError) as e:
        load_weights(net, path)
    message = str(e.value)
    assert "layer 1 (convolutional)" in message and "needs 24 bytes" in message and "20 remain" in message


def test_a_file_that_shrinks_while_read_is_one_error(tmp_path):
    """The arrays are read straight from the file: one that ends before its measured size (cut while being
    read) is an error naming it, not arrays left half read."""
    from pydarknet.files.weights import read_weights
    net = small_net(tmp_path)
    path = write_file(tmp_path / "w", struct.pack("<3iq", 0, 2, 0, 0), np.ones(floats_needed(net) - 1))
    with open(path, "rb") as f, pytest.raises(WeightsError, match="ended while being read"):
        read_weights(f, path.stat().st_size + 4, net, path, None)


def test_weights_through_a_pipe(tmp_path):
    """A shell's `<(zcat net.weights.gz)` names a pipe, whose length is known only once it is read."""
    import os
    import threading
    net = small_net(tmp_path)
    values = np.arange(floats_needed(net), dtype="<f4") / 64
    fifo = tmp_path / "weights.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(struct.pack("<3iq", 0, 2, 0, 7) + values.tobytes()))
    writer.start()
    load_weights(net, fifo)
    writer.join()
    loaded = np.concatenate([a.ravel() for layer in net.layers for a in layer.weight_arrays()])
    assert net.seen == 7 and np.array_equal(loaded, values)


def test_long_file_warns_with_extra_bytes(tmp_path, capsys):
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    path = write_file(tmp_path / "w", struct.pack("<3iq", 0, 2, 0, 0), np.ones(floats_needed(net) + 5))
    load_weights(net, path)
    assert "20 bytes left over" in capsys.readouterr().err


def test_load_upto_reads_the_first_layers_only(tmp_path):
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    first = sum(a.size for a in net.layers[0].weight_arrays())
    path = write_file(tmp_path / "w", struct.pack("<3iq", 0, 2, 0, 0), np.full(first, 3.0))
    load_weights(net, path, upto=1)
    assert np.all(net.layers[0].weights == 3) and np.all(net.layers[1].weights == 0)


def test_missing_and_tiny_files(tmp_path):
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    with pytest.raises(WeightsError, match="no such file"):
        load_weights(net, tmp_path / "absent.weights")
    (tmp_path / "tiny").write_bytes(b"abc")
    with pytest.raises(WeightsError, match="too short for a darknet .weights header"):
        load_weights(net, tmp_path / "tiny")


@pytest.mark.parametrize("weights", golden_weight_files(), ids=lambda p: p.parent.name)
def test_golden_weights_round_trip_byte_identical(weights):
    net = Network(weights.parent / "net.cfg", quiet_unused=True)
    load_weights(net, weights)
    assert weights_bytes(net) == weights.read_bytes()


def test_save_is_atomic_and_round_trips(tmp_path):
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    net.layers[0].weights[:] = 2.5
    net.seen = 640
    target = tmp_path / "out.weights"
    save_weights(net, target)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    again = small_net(tmp_path, CFG.split("[connected]")[0])
    load_weights(again, target)
    assert again.seen == 640 and np.all(again.layers[0].weights == 2.5)


# A process killed (SIGKILL: no clean-up runs) halfway through writing a save's bytes.
KILLED_MID_SAVE = """
import os, signal, sys
from pydarknet.network.network import Network
from pydarknet.files.weights import save_weights
real_fdopen = os.fdopen

class HalfThenKilled:
    def __init__(self, f):
        self.f = f
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

os.fdopen = lambda fd, mode: HalfThenKilled(real_fdopen(fd, mode))
net = Network(sys.argv[1], quiet_unused=True).initialize(7)
save_weights(net, sys.argv[2])
"""


def test_a_crash_mid_save_leaves_the_old_file_whole(tmp_path):
    """README: every file is written atomically, so a crash never leaves half a file. The saving process is
    killed with half of the new file written: the old file is still there, byte for byte, and loads; the half
    is only in the hidden temporary file beside it."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    net.layers[0].weights[:] = 2.5
    target = tmp_path / "x.weights"
    save_weights(net, target)
    old = target.read_bytes()
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, tmp_path / "small.cfg", target],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert target.read_bytes() == old
    [half] = [p for p in tmp_path.iterdir() if p.name.startswith(".x.weights.") and p.name.endswith(".tmp")]
    assert half.stat().st_size == len(old) // 2
    again = small_net(tmp_path, CFG.split("[connected]")[0])
    load_weights(again, target)
    assert np.all(again.layers[0].weights == 2.5)


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """A save that fails (a full disk: the write raises) keeps the old file, removes its temporary file and
    says why."""
    import os
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    target = tmp_path / "x.weights"
    save_weights(net, target)
    old = target.read_bytes()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:100])
            raise OSError(28, "No space left on device")

        def close(self):
            self.f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode, **kw: Full(real_fdopen(fd, mode, **kw)))
    net.layers[0].weights[:] = 1.0
    with pytest.raises(DarknetError, match=f"^cannot write {target}: No space left on device$"):
        save_weights(net, target)
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.cfg", "x.weights"]


def test_a_save_into_a_missing_folder_names_the_file(tmp_path):
    """One line naming the file asked for (not the temporary file beside it) and why."""
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    with pytest.raises(DarknetError, match=f"^cannot write {tmp_path}/no/x.weights: No such file or directory$"):
        save_weights(net, tmp_path / "no" / "x.weights")


def test_saved_files_get_ordinary_permissions(tmp_path):
    import os
    net = small_net(tmp_path, CFG.split("[connected]")[0])
    save_weights(net, tmp_path / "x.weights")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.weights").stat().st_mode & 0o777 == 0o666 & ~mask
