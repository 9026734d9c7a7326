"""Parsing .cfg and .data files: darknet's syntax, its defaults, and errors that name file:line."""
import subprocess
import sys

import pytest

from pydarknet.files.config import CfgError, DarknetError, read_cfg, read_data_cfg
from pydarknet.network.network import Network


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


MISSPELT = NET + "[convolutional]\nfilters=8\nsize=3\nactivaton=leaky\n[maxpool]\nstride=2\n"


@pytest.mark.parametrize("text, warning", [
    (MISSPELT, ":8: unused field 'activaton = leaky' in [convolutional] layer 0, ignored: did you mean activation?"),
    (NET + "momentm=.8\n[maxpool]\n", ":5: unused field 'momentm = .8' in [net], ignored: did you mean momentum?\n"),
    (NET + "[maxpool]\nstride=2\nsparkle=1\n", ":7: unused field 'sparkle = 1' in [maxpool] layer 0, ignored\n"),
])
def test_unused_option_warns_with_line_section_and_closest_key(tmp_path, capsys, text, warning):
    """The closest key is one the layer read and was not given (difflib's), and none when nothing is close; the
    network still loads, the layer with its default as darknet's."""
    path = write(tmp_path, text)
    net = Network(path)
    assert f"Warning: {path}{warning}" in capsys.readouterr().err
    assert len(net.layers) == 1 + text.count("[convolutional]")
    if text == MISSPELT:
        assert net.layers[0].activation == "logistic"   # what the misspelling costs: darknet's default


def test_strict_makes_an_unused_option_an_error_exit_2(tmp_path):
    """--strict (on every command that loads a cfg), through the CLI as a user runs it: one error line, exit 2,
    nothing on stdout, even under -q; without it, the same cfg loads."""
    path = write(tmp_path, MISSPELT)
    strict = subprocess.run([sys.executable, "-m", "pydarknet", "summary", str(path), "--strict", "-q"],
                            capture_output=True, text=True, timeout=300)
    assert (strict.returncode, strict.stdout) == (2, "")
    assert strict.stderr == (f"pydarknet: error: {path}:8: unused field 'activaton = leaky' in [convolutional] layer "
                             f"0: did you mean activation? (--strict: correct or remove the line)\n")
    plain = subprocess.run([sys.executable, "-m", "pydarknet", "summary", str(path)], capture_output=True, text=True,
                           timeout=300)
    assert plain.returncode == 0 and "Parameters 224" in plain.stdout
    assert "did you mean activation?" in plain.stderr


def test_strict_is_on_exactly_the_commands_that_load_a_cfg():
    import click
    from pydarknet.cli import cli

    def leaves(group, path=()):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from leaves(command, path + (name,))
            else:
                yield " ".join(path + (name,)), command

    def loads_cfg(command):   # a CFG argument, alone or among darknet's files (network_files' metavar)
        return any(isinstance(p, click.Argument) and (p.name == "cfg" or "CFG" in (p.metavar or ""))
                   for p in command.params)

    commands = dict(leaves(cli))
    assert len([name for name, command in commands.items() if loads_cfg(command)]) == 23   # serve among them
    for name, command in commands.items():
        assert loads_cfg(command) == any("--strict" in p.opts for p in command.params), name

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
