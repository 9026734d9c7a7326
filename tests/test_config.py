"""Parsing .cfg and .data files: darknet's syntax, its defaults, and errors that name file:line."""
import pytest

from pydarknet.config import CfgError, DarknetError, read_cfg, read_data_cfg
from pydarknet.network import Network


def write(tmp_path, text, name="net.cfg"):
    path = tmp_path / name
    path.write_text(text)
    return path


NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"


def test_syntax_comments_blanks_spaces_and_first_occurrence(tmp_path):
    path = write(tmp_path, "# comment\n[net]\n  width = 64 \n; other comment\n\nheight=32\nwidth=99\n"
                           "channels=3\n[convolutional]\nfilters=8\nsize=3\nactivation=leaky\n")
    net_section, conv = read_cfg(path)
    assert net_section.type == "net" and conv.type == "convolutional"
    assert net_section.int("width") == 64  # first occurrence wins, as darknet's option_find
    assert conv.str("activation") == "leaky"
    assert conv.where("size") == f"{path}:11"


def test_lists_and_numbers(tmp_path):
    path = write(tmp_path, NET + "[yolo]\nmask=0,1,2\nanchors=10,13, 16,30\njitter=.3\n")
    yolo = read_cfg(path)[1]
    assert yolo.ints("mask") == [0, 1, 2]
    assert yolo.floats("anchors") == [10, 13, 16, 30]
    assert yolo.float("jitter") == pytest.approx(0.3)
    assert yolo.int("num", 1) == 1


def test_defaults_match_darknet(tmp_path):
    net = Network(write(tmp_path, NET + "[convolutional]\n[maxpool]\nstride=2\n"))
    conv, pool = net.layers
    assert (conv.filters, conv.size, conv.stride, conv.pad, conv.activation) == (1, 1, 1, 0, "logistic")
    assert (pool.size, pool.padding) == (2, 1)
    assert (net.batch, net.learning_rate, net.momentum, net.decay) == (1, 0.001, 0.9, 0.0001)


@pytest.mark.parametrize("text, where, what", [
    (NET + "[convolutional]\nfilters=abc\n", 6, "expected an integer"),
    (NET + "[convolutional]\nfilters\n", 6, "expected 'key=value'"),
    (NET + "[bogus]\n", 5, "unknown layer type [bogus]"),
    ("[convolutional]\nfilters=1\n[net]\n", 1, "first section must be [net]"),
    ("width=3\n[net]\n", 1, "before the first [section]"),
    (NET + "[convolutional]\nactivation=sparkly\n", 6, "unknown activation 'sparkly'"),
    (NET + "[route]\nlayers=-3\n", 6, "refers to layer -3"),
    (NET + "[convolutional]\n[shortcut]\nfrom=4\n", 7, "refers to layer 4"),
    ("[net]\nwidth=0\nheight=0\nchannels=0\n", 1, "no input size"),
    ("[net]\nwidth=100000\nheight=100000\nchannels=3\n", 2, "GiB"),
])
def test_errors_name_file_and_line(tmp_path, text, where, what):
    path = write(tmp_path, text)
    with pytest.raises(CfgError) as e:
        Network(path)
    assert f"{path}:{where}" in str(e.value)
    assert what in str(e.value)


def test_absurd_size_reports_the_figure(tmp_path):
    path = write(tmp_path, "[net]\nwidth=30000\nheight=30000\nchannels=3\n[convolutional]\nfilters=64\n")
    with pytest.raises(CfgError, match=r"net.cfg:\d+: .*\d+\.\d GiB"):
        Network(path)


def test_unused_option_warns_with_file_line(tmp_path, capsys):
    path = write(tmp_path, NET + "[maxpool]\nstride=2\nsparkle=1\n")
    Network(path)
    assert f"{path}:7: unused field 'sparkle = 1'" in capsys.readouterr().err


def test_missing_file_is_a_darknet_error(tmp_path):
    with pytest.raises(DarknetError, match="no such file"):
        read_cfg(tmp_path / "absent.cfg")


def test_data_file(tmp_path):
    path = write(tmp_path, "classes= 3\ntrain = data/train.txt\n# c\nnames=data/x.names\nbackup=backup/\n",
                 "x.data")
    data = read_data_cfg(path)
    assert data.int("classes") == 3
    assert data.str("train") == "data/train.txt"
    assert data.str("valid", "none") == "none"
