"""The options of detection as small values: each holds its defaults and checks them, so that the command line, the
Python API and a server build the same thing the same way.

    thresholds = Thresholds(thresh=.3)                 # hier_thresh .5, nms .45: the defaults, here alone
    detector.detect("dog.jpg", thresholds=thresholds)  # or detector.detect("dog.jpg", .3)

A bad value is a DarknetError of one line when the value is made (Thresholds(nms=2) names -nms), never later in a
pass. The values are frozen: `dataclasses.replace` or `given` make a changed one. `given(Thresholds, nms=None)`
leaves out what was not given (None), so an option left unset keeps the default it has here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..files.config import DarknetError, check_fractions, class_numbers

if TYPE_CHECKING:   # for the annotations alone: results.tiles loads the kernels
    from ..results.tiles import Tiles

DECODERS = ("darknet", "opencv")
ENGINES = ("numba", "onnxruntime", "openvino")   # what runs a network's forward (tasks/engines.py)


def engine_named(engine):
    """`engine`, if one of ENGINES; a DarknetError naming them otherwise."""
    if engine not in ENGINES:
        raise DarknetError(f"--engine {engine}: give {', '.join(ENGINES)}")
    return engine


def given(cls, base=None, **values):
    """`base` (a `cls`; None: cls's defaults) with each of `values` that is not None in its place: how an option left
    unset (None) on the command line or in an API call keeps the default."""
    return dataclasses.replace(cls() if base is None else base,
                               **{name: value for name, value in values.items() if value is not None})


def class_set(value):
    """Class numbers as a frozenset: given as numbers, or as a string as -skipclasses takes it ("2,5-8")."""
    return class_numbers(value) if isinstance(value, str) else frozenset(int(c) for c in value or ())


@dataclass(frozen=True)
class Thresholds:
    """What a Detector reports of a forward pass: the boxes whose class probability is over `thresh` (None: the
    network's darknet's default, predict.DEFAULT_THRESH: .25 for the fork's, .5 for pjreddie's), of classes over
    `hier_thresh` in a word tree, after darknet's NMS at IoU `nms` (0: none). Each a fraction from 0 to 1."""
    thresh: float | None = None
    hier_thresh: float = 0.5
    nms: float = 0.45

    def __post_init__(self):
        check_fractions(thresh=self.thresh, hier=self.hier_thresh, nms=self.nms)   # as the command line spells them

    def threshold(self, default: float) -> float:
        """`thresh`, or `default` (the network's darknet's) when it is None."""
        return default if self.thresh is None else self.thresh


@dataclass(frozen=True)
class Preprocessing:
    """An image's part before the network. `letterbox`: True letterboxes it to the network, False resizes it, None
    does as the network's darknet does (a detector: pjreddie letterboxes, the fork resizes unless the cfg's [net]
    says letter_box=1; a classifier: darknet's resize_min). `decoder`: "darknet" (its exact pixels) or "opencv".
    `rgb`: uint8 arrays are RGB, not OpenCV's BGR. `tiles` (detectors): True or a tiles.Tiles cuts an image larger
    than the network into tiles (pydarknet.results.tiles); None, False: no tiles (a True is kept as Tiles())."""
    letterbox: bool | None = None
    decoder: str = "darknet"
    rgb: bool = False
    tiles: bool | Tiles | None = None

    def __post_init__(self):
        if self.letterbox not in (None, True, False):
            raise DarknetError(f"letterbox {self.letterbox!r}: give True, False or None (the network's darknet's)")
        if self.decoder not in DECODERS:
            raise DarknetError(f"--decoder {self.decoder}: give {' or '.join(DECODERS)}")
        if self.tiles is None or self.tiles is False:
            object.__setattr__(self, "tiles", None)
            return
        from ..results.tiles import Tiles   # (OpenCV and Numba, which the command line loads when it needs them)
        if not (self.tiles is True or isinstance(self.tiles, Tiles)):
            raise DarknetError(f"tiles {self.tiles!r}: give True or a tiles.Tiles")
        object.__setattr__(self, "tiles", Tiles() if self.tiles is True else self.tiles)

    @property
    def classifier_resize(self):
        """The Classifier's preprocess this value names: letterbox None "resize_min", True "letterbox", False
        "resize"."""
        return {None: "resize_min", True: "letterbox", False: "resize"}[self.letterbox]


@dataclass(frozen=True)
class Outputs:
    """What a detecting command prints of each image or frame: one JSON object a line (`as_json`) or darknet's
    text, with each box in pixels (`ext_output`, AlexeyAB's -ext_output); the classes never reported
    (`skip_classes`: class numbers, or a string as -skipclasses takes it, "2,5-8"; checked against the network
    by the Detector)."""
    as_json: bool = False
    ext_output: bool = False
    skip_classes: frozenset[int] = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "skip_classes", class_set(self.skip_classes))


@dataclass(frozen=True)
class ImageOutputs(Outputs):
    """`detect`'s outputs: as Outputs, and `out` (a name ending in .json: the fork's JSON file of the whole run; any
    other: the drawn image's base name [predictions]), `save_labels` (YOLO labels beside each image), `crop` (a
    folder to cut each detection out into), `heatmaps` (each class's heat map beside the drawing)."""
    out: str | None = None
    save_labels: bool = False
    crop: str | None = None
    heatmaps: bool = False

    @property
    def json_file(self):
        """The fork's JSON file `out` names, or None."""
        return self.out if self.out is not None and self.out.lower().endswith(".json") else None


@dataclass(frozen=True)
class VideoOutputs(Outputs):
    """The demo's outputs: as Outputs, and `out_filename` (the annotated video), `prefix` (each annotated frame as
    PREFIX_%08d.jpg), `frame_skip` (detect one frame, then skip that many), `time_limit` (seconds; 0: none)."""
    out_filename: str | None = None
    prefix: str | None = None
    frame_skip: int = 0
    time_limit: float = 0



@dataclass(frozen=True)
class Tracking:
    """The demo's tracks (results.track.Tracker): `track` gives each object an id across frames; `count_line`
    ((x1, y1, x2, y2) in pixels) counts the tracks crossing it (and implies `track`), with `count_band`'s
    hysteresis (None: the Tracker's, results.track.COUNT_BAND)."""
    track: bool = False
    count_line: tuple[float, float, float, float] | None = None
    count_band: float | None = None

    def tracker(self):
        """A new results.track.Tracker for these options, or None when nothing is tracked."""
        if not self.track and self.count_line is None:
            return None
        from ..results.track import Tracker
        band = {} if self.count_band is None else {"count_band": self.count_band}
        return Tracker(count_line=self.count_line, **band)


@dataclass(frozen=True)
class Live:
    """The demo's live outputs (tasks.live.LiveOutput): the annotated frames as MJPEG on `mjpeg_port` (JPEG
    quality `mjpeg_quality`), the detections on `json_port`, each frame's JSON POSTed to `post_url`; the ports on
    `host` (127.0.0.1: this machine only)."""
    mjpeg_port: int | None = None
    json_port: int | None = None
    mjpeg_quality: int = 40
    post_url: str | None = None
    host: str = "127.0.0.1"

    @property
    def wanted(self):
        return self.mjpeg_port is not None or self.json_port is not None or self.post_url is not None


@dataclass(frozen=True)
class NetworkOptions:
    """How a command builds its network: on `devices` (("cuda:0",), or several for training's replicas: ("cuda:0",
    "cuda:1"), ("cpu", "cpu"); (): the CPU), `strict` (a cfg option no layer reads is an error, not a warning),
    run by `engine` (tasks.engines: "numba", pydarknet's own, or "onnxruntime", "openvino" for inference)."""
    devices: tuple[str, ...] = ()
    strict: bool = False
    engine: str = "numba"

    def __post_init__(self):
        from ..network.cuda import parse_device
        for device in self.devices:
            parse_device(device)   # a DarknetError naming the forms it takes
        object.__setattr__(self, "devices", tuple(self.devices))
        engine_named(self.engine)

    def trains(self):
        """These options, for a command that trains: a DarknetError when the engine cannot."""
        if self.engine != "numba":
            raise DarknetError(f"--engine {self.engine} runs inference only: only --engine numba trains")
        return self

    @property
    def device(self):
        """The first device (None: the CPU): the one a command that runs one network runs it on."""
        return self.devices[0] if self.devices else None
