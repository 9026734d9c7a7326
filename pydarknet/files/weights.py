"""Darknet's .weights files: a small header, then every layer's parameters as raw little-endian float32.

Header: major, minor, revision (int32), then `seen` (images trained on): int64 when major*10+minor >= 2 and
both are below 1000, else int32. Files whose major or minor exceed 1000 store connected weights transposed.
"""
import io
import os
import stat
import struct
import tempfile
from pathlib import Path

import numpy as np

from .config import DarknetError, note, warn
from .errors import WriteError
from .download import cached_file, missing_weights_message
from .resources import find_argument


class WeightsError(DarknetError):
    pass


def read_header(data, path, size=None):
    """(version, seen, offset of the first layer's parameters) from the file's first bytes `data`; `size`: the
    file's length when `data` is only its start."""
    size = len(data) if size is None else size
    if size < 16:
        raise WeightsError(f"{path}: {size} bytes is too short for a darknet .weights header (16-20 bytes)")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    if major * 10 + minor >= 2 and major < 1000 and minor < 1000:
        if size < 20:
            raise WeightsError(f"{path}: header of version {major}.{minor} needs 20 bytes, the file has {size}")
        (seen,) = struct.unpack_from("<q", data, 12)
        offset = 20
    else:
        (seen,) = struct.unpack_from("<i", data, 12)
        offset = 16
    return (major, minor, revision), seen, offset


def find_weights(name):
    """A weights argument: as any other file argument, else (a bare file name that exists nowhere else, such
    as `tiny.weights`) the file `pydarknet download` put in its cache."""
    name = str(name)
    path = Path(find_argument(name))
    if path.exists():
        return path
    cached = cached_file(name) if Path(name).name == name else None
    if cached is None:
        raise WeightsError(missing_weights_message(name))
    note(f"{name}: not in the working directory; using the downloaded {cached}")
    return cached


def load_weights(net, path, upto=None):
    """Read parameters into net's layers (the first `upto` layers only when given, like load_weights_upto)."""
    path = find_weights(path)
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):   # a pipe (`<(zcat net.weights.gz)`): its length is known once read
                data = f.read()
                return read_weights(io.BytesIO(data), len(data), net, path, upto)
            return read_weights(f, info.st_size, net, path, upto)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except OSError as e:
        raise WeightsError(f"{path}: cannot read: {e.strerror}") from None


def read_weights(f, size, net, path, upto):
    """load_weights from the open file `f` of `size` bytes: each array read straight into the layer's memory
    (a copy of the whole file first cost a fifth of yolov3-tiny's load in page faults and copying)."""
    version, seen, offset = read_header(f.read(20), path, size)
    f.seek(offset)
    transpose = version[0] > 1000 or version[1] > 1000
    layers = [layer for layer in (net.layers if upto is None else net.layers[:upto]) if not layer.dontload]
    need = offset + 4 * sum(a.size for layer in layers for a in layer.weight_arrays(transpose=transpose, loading=True))
    sizes = f"the file has {size} bytes, {net.cfg_path} needs {need}"
    for layer in layers:
        for array in layer.weight_arrays(transpose=transpose, loading=True):
            if offset + array.size * 4 > size:
                raise WeightsError(f"{path}: too short for {net.cfg_path}: ran out at layer {layer.index} "
                                   f"({layer.type}), which needs {array.size * 4} bytes at offset {offset} but only "
                                   f"{size - offset} remain ({sizes}): weights of a smaller or another network?")
            read_array(f, array, path)
            offset += array.size * 4
        variance = getattr(layer, "rolling_variance", None)
        if variance is not None and (variance < 0).any():   # a variance read from where another layer's data is
            raise WeightsError(f"{path}: does not match {net.cfg_path} from layer {layer.index} ({layer.type}) on: "
                               f"its batch-norm variances read as negative numbers ({sizes}): weights of "
                               f"another network?")
    if upto is None and offset < size:
        warn(f"{path}: {size - offset} bytes left over after the last layer of {net.cfg_path} "
             f"({sizes}): the weights may belong to another cfg")
    net.seen = seen
    net.weights_version = version
    return net


def read_array(f, array, path):
    """The next array.size little-endian float32 of `f` into `array`."""
    if array.dtype == np.dtype("<f4") and array.flags.c_contiguous:
        got = f.readinto(memoryview(array).cast("B"))
    else:   # a transposed view: read, then copy in
        data = f.read(array.size * 4)
        got = len(data)
        if got == array.size * 4:
            array[...] = np.frombuffer(data, "<f4").reshape(array.shape)
    if got != array.size * 4:
        raise WeightsError(f"{path}: ended while being read (changed on disk?)")


def weights_bytes(net, upto=None):
    """The file darknet's save_weights writes: version 0.2.0 (the AlexeyAB fork's 0.2.5 for a network that follows
    the fork: the revision that tells a fork network whose cfg has no fork-only option), int64 seen, then every
    saved layer."""
    parts = [struct.pack("<3iq", 0, 2, 5 if getattr(net, "darknet", None) == "ab" else 0, int(net.seen))]
    for layer in net.layers if upto is None else net.layers[:upto]:
        if layer.dontsave:
            continue
        parts += [np.ascontiguousarray(a, "<f4").tobytes() for a in layer.weight_arrays()]
    return b"".join(parts)


def save_weights(net, path, upto=None):
    """Write darknet's .weights file (the first `upto` layers only when given), atomically."""
    atomic_write(path, weights_bytes(net, upto))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, data):
    """`data` (bytes) to `path` through an AtomicFile: a crash leaves either the old file or the new one, never
    half a file."""
    with AtomicFile(path, "wb") as f:
        f.write(data)


class AtomicFile:
    """A file written as it goes under a temporary name beside `path`, flushed to disk and renamed over it when the
    `with` block ends without an exception (or by commit()): a stop (Ctrl-C, SIGTERM), an error or a crash before
    then leaves the old file or none, never half a new one. Text with "\n" line ends, or bytes with mode "wb". An
    OSError (a full disk, a read-only folder) is a WriteError naming `path`."""

    def __init__(self, path, mode="w"):
        self.path = Path(path)
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as e:   # a missing or read-only folder: name the file asked for, not the temporary one
            raise WriteError(self.path, e.strerror) from None
        try:
            os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; a saved one gets the usual mode
            self.file = os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "\n"}))
        except BaseException as e:
            os.close(fd)
            self._discard(e)

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as e:
            self._discard(e)

    def __enter__(self):
        return self

    def commit(self):
        """The file is whole: flushed to disk and renamed into place (what the block's end does)."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException as e:
            self._discard(e)

    def __exit__(self, kind, error, traceback):
        if kind is not None:
            self._discard(error)
        self.commit()

    def _discard(self, error):
        """Close and remove the temporary file, then raise `error` (an OSError as a WriteError)."""
        try:
            if hasattr(self, "file"):
                self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise WriteError(self.path, error.strerror) from None
        raise error
