"""Reading darknet's text files: network `.cfg` files and `.data` files.

Both are lines of `key=value` (a `.cfg` groups them under `[section]` headers). Darknet strips every blank
character from a line, skips lines starting with `#` or `;`, and lets the first occurrence of a key win;
we do the same, but refuse what darknet would silently misread (a value that is not a number where a number
is wanted, a line without `=`), naming `file:line`.
"""
import difflib
import numbers
import os
import re
import sys
import warnings
from pathlib import Path

from .errors import CfgError, DarknetError  # noqa: F401  (imported from here throughout pydarknet)
from .resources import find_argument, find_file


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


# Chatter on stderr (warnings, the layer table, progress); `-q` turns it off. Errors are never silenced. The
# process's output choice: the command line sets it (-q, and an MPI job's ranks but the first); nothing in the
# Python API (Detector, Classifier, Network) changes it.
chatter = {"quiet": False}


def set_quiet(quiet):
    """-q: no chatter, and none from the libraries either (OpenCV's log lines, numpy's RuntimeWarnings)."""
    chatter["quiet"] = quiet
    if quiet:
        os.environ["OPENCV_LOG_LEVEL"] = "SILENT"   # OpenCV reads it at its first log line
        warnings.simplefilter("ignore")


def note(message):
    if not chatter["quiet"]:
        print(message, file=sys.stderr)


def warn(message):
    note(f"Warning: {message}")


class UnusedOptionError(CfgError):
    """A cfg option no layer reads, under --strict: the user asked for the cfg to be checked, so it is a usage
    error (exit 2), as an unknown flag is."""
    exit_code = 2


class Section:
    """One `[type]` block of a cfg file (or a whole `.data` file): its options with their line numbers."""

    def __init__(self, type, path, line, layer=None):
        self.type = type
        self.path = path
        self.line = line
        self.layer = layer  # its layer's index (darknet's layer table numbers), None for [net] and .data files
        self.options = {}  # key -> (value, line number)
        self.used = set()

    def where(self, key=None):
        line = self.options[key][1] if key in self.options else self.line
        return f"{self.path}:{line}"

    def error(self, message, key=None):
        return CfgError(f"{self.where(key)}: {message}")

    def has(self, key):
        return key in self.options

    def raw(self, key):
        self.used.add(key)
        return self.options[key][0] if key in self.options else None

    def str(self, key, default=None):
        value = self.raw(key)
        return default if value is None else value

    def _number(self, key, value, parse, kind):
        try:
            return parse(value)
        except ValueError:
            raise self.error(f"'{key}={value}': expected {kind}", key) from None

    def int(self, key, default=0):
        value = self.raw(key)
        return default if value is None else self._number(key, value, _parse_int, "an integer")

    def float(self, key, default=0.0):
        value = self.raw(key)
        return default if value is None else self._number(key, value, _parse_float, "a number")

    def ints(self, key, default=None):
        value = self.raw(key)
        if value is None:
            return default
        return [self._number(key, v, _parse_int, "a list of integers") for v in _split_list(value)]

    def floats(self, key, default=None):
        value = self.raw(key)
        if value is None:
            return default
        return [self._number(key, v, _parse_float, "a list of numbers") for v in _split_list(value)]

    def unused(self):
        """Options nobody asked for: (key, value, line), in file order."""
        return [(k, v, n) for k, (v, n) in self.options.items() if k not in self.used]

    def warn_unused(self, strict=False):
        """Darknet's "Unused field" warning for each option nobody asked for, with the key it most likely misspells
        (the closest of the keys this section's layer read and was not given); `strict` (--strict): an error (the
        first such option). Call it once the layer is built: which keys a layer reads is what it asked for."""
        for key, value, line in self.unused():
            layer = "" if self.layer is None else f" layer {self.layer}"
            message = f"{self.path}:{line}: unused field '{key} = {value}' in [{self.type}]{layer}"
            close = difflib.get_close_matches(key, sorted(self.used - self.options.keys()), n=1)
            hint = f": did you mean {close[0]}?" if close else ""
            if strict:
                raise UnusedOptionError(f"{message}{hint or ': no layer reads it'} (--strict: correct or remove the "
                                        f"line)")
            warn(f"{message}, ignored{hint}")


def _split_list(value):
    # darknet tolerates a trailing comma ("1,2,3,"): atoi of the empty tail is never read for anchors,
    # and we simply drop empty items.
    return [v for v in value.split(",") if v != ""]


def _parse_int(text):
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        # darknet's atoi reads the leading integer part: "1.5" -> 1
        return int(_INT.match(text).group(0)) if _INT.match(text) else 0
    raise ValueError(text)


def _parse_float(text):
    if _FLOAT.fullmatch(text):
        return float(text)
    raise ValueError(text)


# What a file given where a text file belongs may be instead, by its first bytes.
MAGIC = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
         (b"BM", "a BMP image"))
DATA_KEYS = {"classes", "train", "valid", "names", "labels", "backup", "results", "eval", "top", "map"}
ORDER = "the arguments are CFG WEIGHTS IMAGE (detector test, map, train: DATA CFG ...)"


def _not_text(data):
    """What binary `data` is ("a JPEG image", ...), or None for text."""
    kind = next((kind for magic, kind in MAGIC if data.startswith(magic)), None)
    return kind or ("binary data" if b"\0" in data[:4096] else None)


def _read_lines(path, what):
    path = Path(find_argument(path))
    try:
        data = path.read_bytes()
        kind = _not_text(data)
        if kind:
            raise DarknetError(f"{path}: {kind}, not a {what}: {ORDER}")
        text = data.decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise DarknetError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DarknetError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise DarknetError(f"{path}: cannot read: {e.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = "".join(line.split())  # darknet's strip(): every blank character goes
        if line and line[0] not in "#;":
            yield number, line


def _add_option(section, path, number, line):
    if "=" not in line:
        raise CfgError(f"{path}:{number}: expected 'key=value', got '{line}'")
    key, value = line.split("=", 1)
    if not key or not value:
        raise CfgError(f"{path}:{number}: expected 'key=value', got '{line}'")
    if key not in section.options:  # darknet's lookup finds the first occurrence
        section.options[key] = (value, number)


def read_cfg(path):
    """Parse a network .cfg into a list of Sections (the first one is [net])."""
    sections = []
    for number, line in _read_lines(path, "network .cfg file"):
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"{path}:{number}: malformed section header '{line}'")
            sections.append(Section(line[1:-1], str(path), number, layer=len(sections) - 1 if sections else None))
        elif not sections and line.split("=")[0] in DATA_KEYS:
            raise CfgError(f"{path}: a .data file ({line}), not a network cfg: use `pydarknet detector test {path} "
                           f"CFG WEIGHTS IMAGE` (DATA CFG WEIGHTS)")
        elif not sections:
            raise CfgError(f"{path}:{number}: option '{line}' before the first [section]")
        else:
            _add_option(sections[-1], path, number, line)
    if not sections:
        raise CfgError(f"{path}: no sections: not a darknet .cfg file")
    if sections[0].type not in ("net", "network"):
        raise CfgError(f"{sections[0].where()}: first section must be [net] or [network], got [{sections[0].type}]")
    return sections


def read_data_cfg(path):
    """Parse a darknet .data file (`classes=`, `train=`, `names=`, ...) into a Section."""
    section = Section("data", str(path), 1)
    for number, line in _read_lines(path, ".data file"):
        _add_option(section, path, number, line)
    return section


def read_data_or_names(path):
    """A .data file's options (read_data_cfg), or, for a `.names` file, those of a .data file whose one line is
    names=PATH: detecting needs no .data file (as in the Hank.ai fork)."""
    if Path(str(path)).suffix.lower() == ".names":
        section = Section("data", str(path), 1)
        section.options["names"] = (str(path), 1)
        return section
    return read_data_cfg(path)


def read_names(path):
    """Class names, one per line (darknet's get_labels)."""
    try:
        return [line.rstrip("\r\n") for line in Path(find_argument(path)).read_text(errors="replace").splitlines()]
    except OSError as e:
        raise DarknetError(f"{path}: cannot read names: {e.strerror}") from None


def load_names(data_file, classes, cfg):
    """Class names from a .data file (`names=`, else `labels=`) or a .names file, an error when there are too few
    (darknet reads past its list). More names than classes is darknet's own imagenet1k.data: the 21842-name list
    whose first 1000 are the classes."""
    data = read_data_or_names(data_file)
    name_list = data.str("names") or data.str("labels")
    if not name_list:
        raise DarknetError(f"{data_file}: no names= or labels= line")
    path = find_file(name_list, beside=data_file, what="names file")
    names = read_names(path)
    if classes and len(names) < classes:
        raise DarknetError(f"{path} has {len(names)} names but {cfg} has {classes} classes: one name per line, a "
                           f"line for each class (is {data_file} the .data file of this network?)")
    return names, data


def default_data(name):
    """Darknet's shortcuts read cfg/coco.data or cfg/imagenet1k.data from the working directory; we fall back
    to the copies pydarknet ships."""
    return str(find_file(f"cfg/{name}", what="data file"))


def class_numbers(value):
    """The class numbers of a list as the Hank.ai fork's -skipclasses takes it, numbers and ranges ("2,5-8"), as a
    frozenset; None for None. A list that is not: one line naming it."""
    if value is None:
        return None
    numbers = set()
    for part in value.split(","):
        ends = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if ends is None or int(ends[2] or ends[1]) < int(ends[1]):
            raise DarknetError(f"-skipclasses {value}: give class numbers and ranges, e.g. 2,5-8")
        numbers.update(range(int(ends[1]), int(ends[2] or ends[1]) + 1))
    return frozenset(numbers)


def check_fractions(**options):
    """Thresholds and IoUs (`thresh=.25, nms=.45`, ...) are fractions: a value outside [0, 1] (or NaN) is one
    line naming the option as the command line spells it; so is a value that is not a number."""
    for name, value in options.items():
        if value is None:
            continue
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not number or not 0 <= value <= 1:
            raise DarknetError(f"-{name} {f'{value:g}' if number else repr(value)}: give a fraction from 0 to 1 "
                               f"(.25 for 25 %)")
