"""The files a detector's command loads: in darknet's order (`detector test DATA CFG WEIGHTS`, `detect CFG WEIGHTS`),
or in any order, told apart by extension as the Hank.ai fork's command line tells them apart: `.cfg`, `.weights`,
and `.names` (or `.data`) for the class names, so that no `.data` file is needed."""
import re
from dataclasses import dataclass
from pathlib import PurePath

from ..files.errors import DarknetError
from ..files.resources import find_argument, is_url

ROLES = {".cfg": "cfg", ".weights": "weights", ".names": "names", ".data": "names"}
# An image or a video never takes a file's place: `detect CFG dog.jpg` misses its WEIGHTS, whatever stdin holds.
MEDIA = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".jp2",
         ".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
METAVARS = {"names": "DATA", "cfg": "CFG", "weights": "WEIGHTS"}
KINDS = {"names": ".names or .data", "cfg": ".cfg", "weights": ".weights"}


class ArgumentsError(DarknetError):
    """Arguments that cannot be told apart, or input the command cannot take (e.g. an empty stdin): a usage error,
    exit status 2."""
    exit_code = 2


@dataclass
class NetworkFiles:
    cfg: str
    weights: str
    names: str = None   # a .data or .names file; None: the command's default
    rest: tuple = ()    # the other arguments, in order: images, a video source, an image list


def role_of(argument):
    """"cfg", "weights" or "names" for an argument whose extension tells it (any case), else None."""
    return ROLES.get(PurePath(argument).suffix.lower())


def sort_files(arguments, slots, most=None):
    """A NetworkFiles from the command line's positional `arguments`. `slots`: the roles of darknet's positional
    form, in order (("names", "cfg", "weights") for `detector test`, ("cfg", "weights") for `detect`). An argument
    whose extension tells its role takes that role wherever it stands (a .names or .data file gives the names to a
    command without a DATA slot too); the roles still open take the other arguments in order, from the first, so
    that darknet's own order works with any file names (but for images and videos, which are never files of the
    network); what is left is `rest`, in order (at most `most`)."""
    taken = {}
    for index, argument in enumerate(arguments):
        role = role_of(argument)
        if role is not None and role in taken:
            raise ArgumentsError(f"{arguments[taken[role]]} and {argument} are both {KINDS[role]} files: give one")
        if role is not None:
            taken[role] = index
    others = [index for index in range(len(arguments)) if index not in taken.values()]
    files = [index for index in others if PurePath(arguments[index]).suffix.lower() not in MEDIA]
    for role in slots:
        if role not in taken:
            if not files:
                raise ArgumentsError(f"Missing argument '{METAVARS[role]}'{missing_why(role, arguments, taken)}.")
            taken[role] = files.pop(0)
            others.remove(taken[role])
    if most is not None and len(others) > most:
        raise ArgumentsError(f"Got unexpected extra argument ({' '.join(arguments[i] for i in others[most:])})")
    return NetworkFiles(arguments[taken["cfg"]], arguments[taken["weights"]],
                        arguments[taken["names"]] if "names" in taken else None, tuple(arguments[i] for i in others))


def missing_why(role, arguments, taken):
    """The likely slip behind a missing CFG where a .data or .names file was given: that file put where the
    network's .cfg goes (`detect coco.data yolov3-tiny.weights`), as ": <file> gives ..."; else ""."""
    if role != "cfg" or "names" not in taken:
        return ""
    names = arguments[taken["names"]]
    return f": {names} gives the class names, not the network: give the .cfg as well, before the WEIGHTS"


def check_order(cfg, weights):
    """An ArgumentsError naming both when `cfg` is a weights file (binary) and `weights` a cfg (text with a
    [section]): the two given the wrong way round, with names whose extensions did not tell them apart."""
    cfg_start, weights_start = file_start(cfg), file_start(weights)
    if (cfg_start and weights_start and b"\0" in cfg_start and b"\0" not in weights_start
            and re.search(rb"^\s*\[\w+\]", weights_start, re.M)):
        raise ArgumentsError(f"{cfg} and {weights} are swapped: {cfg} is binary (weights) where the CFG goes, "
                             f"{weights} a cfg where the WEIGHTS go: give the CFG first, then the WEIGHTS")


def file_start(name):
    """The first 4 KiB of a local file argument, or None (a URL, a file that cannot be read: its reader says why)."""
    if is_url(name):
        return None
    try:
        with open(find_argument(name), "rb") as f:
            return f.read(4096)
    except (OSError, ValueError):
        return None
