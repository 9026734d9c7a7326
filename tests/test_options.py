"""The options as values (pydarknet.tasks.options): each holds its defaults and checks them in one place, and a
Network's device and cfg strictness are its own, never the process's."""
import re

import pytest

from conftest import ROOT
from pydarknet.files.config import DarknetError, UnusedOptionError
from pydarknet.tasks.options import (ImageOutputs, NetworkOptions, Preprocessing, Thresholds, Tracking,
                                     VideoOutputs, given)

V4 = (ROOT / "cfg/shapes-v4tiny.cfg", ROOT / "data/shapes-v4tiny.weights")
SHAPES = str(ROOT / "data/shapes.jpg")
FRACTION = ": give a fraction from 0 to 1 (.25 for 25 %)"


def test_thresholds_have_darknets_defaults_and_take_keywords_as_a_server_gives_them():
    assert Thresholds() == Thresholds(None, 0.5, 0.45)
    assert Thresholds(**{"nms": 0.3, "thresh": 0.2}) == Thresholds(thresh=0.2, hier_thresh=0.5, nms=0.3)
    assert Thresholds().threshold(0.25) == 0.25 and Thresholds(0.6).threshold(0.25) == 0.6
    assert given(Thresholds, Thresholds(thresh=0.3), thresh=None, hier_thresh=0.6, nms=None) == Thresholds(0.3, 0.6)
    assert given(Thresholds, nms=0) == Thresholds(nms=0)   # 0: no NMS, a value given


@pytest.mark.parametrize("values,line", [({"thresh": 1.5}, "-thresh 1.5"), ({"hier_thresh": -0.1}, "-hier -0.1"),
                                         ({"nms": float("nan")}, "-nms nan"), ({"thresh": "high"}, "-thresh 'high'"),
                                         ({"nms": True}, "-nms True")])
def test_thresholds_refuse_what_is_not_a_fraction_in_one_line(values, line):
    with pytest.raises(DarknetError) as error:
        Thresholds(**values)
    assert str(error.value) == line + FRACTION


def test_preprocessing_checks_and_fills_its_values():
    from pydarknet.results.tiles import Tiles
    assert Preprocessing() == Preprocessing(None, "darknet", False, None)
    assert Preprocessing(tiles=True).tiles == Tiles() and Preprocessing(tiles=False).tiles is None
    assert [Preprocessing(letterbox=v).classifier_resize for v in (None, True, False)] == [
        "resize_min", "letterbox", "resize"]
    with pytest.raises(DarknetError, match=r"^--decoder pil: give darknet or opencv$"):
        Preprocessing(decoder="pil")
    with pytest.raises(DarknetError, match=r"^letterbox 'yes': give True, False or None"):
        Preprocessing(letterbox="yes")


def test_outputs_tracking_and_network_options():
    assert ImageOutputs(skip_classes="2,5-6").skip_classes == frozenset({2, 5, 6})
    assert VideoOutputs(skip_classes=[1]).skip_classes == frozenset({1}) and VideoOutputs().time_limit == 0
    assert ImageOutputs(out="run.JSON").json_file == "run.JSON" and ImageOutputs(out="drawn").json_file is None
    with pytest.raises(DarknetError, match="-skipclasses 2-1"):
        ImageOutputs(skip_classes="2-1")
    assert Tracking().tracker() is None and Tracking(count_line=(0, 0, 9, 9)).tracker().counter is not None
    assert NetworkOptions(["cpu", "cuda:1"]).devices == ("cpu", "cuda:1") and NetworkOptions().device is None
    with pytest.raises(DarknetError, match="cuda:N"):
        NetworkOptions(("tpu",))


@pytest.fixture(scope="module")
def detector():
    from pydarknet.tasks.predict import Detector
    return Detector(*V4, names=["circle", "square", "triangle"])


def boxes(result):
    return [(d.class_id, d.prob, d.box) for d in result.detections]


def test_detect_takes_the_thresholds_as_arguments_or_as_a_value(detector):
    low, usual = boxes(detector.detect(SHAPES, 0.01)), boxes(detector.detect(SHAPES))
    assert len(low) > len(usual) > 0 and min(p for _, p, _ in usual) > 0.25   # the fork's default, .25
    assert boxes(detector.detect(SHAPES, thresholds=Thresholds(0.01))) == low
    assert boxes(detector.detect(SHAPES, thresh=0.01, hier_thresh=0.5, nms=0.45)) == low
    assert boxes(detector.detect_batch([SHAPES], thresholds=Thresholds(0.9), thresh=0.01)[0]) == low   # given wins
    no_nms = boxes(detector.detect(SHAPES, 0.01, nms=0))
    assert len(no_nms) > len(low)
    assert [boxes(r) for r in detector.track([SHAPES], thresholds=Thresholds(0.01))] == [low]
    with pytest.raises(DarknetError, match=re.escape("-nms 2" + FRACTION)):
        detector.detect(SHAPES, nms=2)


def test_a_detectors_preprocessing_is_its_own(detector):
    from pydarknet.tasks.predict import Detector
    boxed = Detector(*V4, names=["circle", "square", "triangle"], network=detector.net.replica(),
                     preprocessing=Preprocessing(letterbox=not detector.letterbox))
    assert boxed.letterbox is (not detector.letterbox) and boxed.preprocessing.decoder == "darknet"
    assert Detector(*V4, network=detector.net.replica(), preprocessing=boxed.preprocessing,
                    letterbox=detector.letterbox).letterbox is detector.letterbox   # an argument given wins
    assert boxes(boxed.detect(SHAPES)) != boxes(detector.detect(SHAPES))
    assert detector.preprocessing == Preprocessing(letterbox=False)   # the fork's resize: shapes-v4tiny's cfg


MISSPELT = "[net]\nwidth=32\nheight=32\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\nactivaton=leaky\n"


def test_a_networks_strictness_and_device_are_its_own(tmp_path, capsys):
    """A strict Network refuses the misspelt key; one built after it, not strict, warns as darknet does. --strict
    on a command leaves the Networks built after it in the process as they were (it was process-wide)."""
    from click.testing import CliRunner

    from pydarknet.cli import cli
    from pydarknet.network.network import Network
    cfg = tmp_path / "misspelt.cfg"
    cfg.write_text(MISSPELT)
    with pytest.raises(UnusedOptionError, match="unused field 'activaton = leaky'.*did you mean activation"):
        Network(cfg, strict=True)
    assert isinstance(CliRunner().invoke(cli, ["summary", str(cfg), "--strict"]).exception, UnusedOptionError)
    capsys.readouterr()
    net = Network(cfg, device="cpu")
    assert "unused field 'activaton = leaky' in [convolutional] layer 0, ignored" in capsys.readouterr().err
    assert (net.device, net.engine, net.layers[0].out_shape) == ("cpu", None, (4, 30, 30))
    assert Network(cfg, quiet_unused=True).device == "cpu"
