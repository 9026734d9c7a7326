"""`pydarknet download`: darknet's official weights, fetched once into a user cache and found there by name.

The cache is `$PYDARKNET_HOME`, else `$XDG_CACHE_HOME/pydarknet`, else `~/.cache/pydarknet`. A download grows
`NAME.part` (a cut connection leaves it, and the next run asks the server for the rest with an HTTP Range);
the whole file's SHA-256 is checked before it is renamed into place, so the cache only ever holds the
published bytes. Only the standard library speaks HTTP here.
"""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DarknetError

CHUNK = 1 << 16
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Model:
    name: str
    url: str
    size: int
    sha256: str
    cfg: str
    what: str

    @property
    def file_name(self):
        return self.url.rsplit("/", 1)[1]


# The SHA-256 and sizes are those of the original files (checked against copies downloaded from these addresses).
MODELS = {model.name: model for model in (
    Model("tiny", "https://pjreddie.com/media/files/tiny.weights", 4185968,
          "f1c3fe6b9bab9af69ae2a090682df3e5b9d83accba69551315f030ce1b37ea81", "cfg/tiny.cfg",
          "Tiny Darknet, ImageNet classifier"),
    Model("yolov3-tiny", "https://pjreddie.com/media/files/yolov3-tiny.weights", 35434956,
          "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c", "cfg/yolov3-tiny.cfg",
          "COCO detector"),
    Model("yolov4-tiny",
          "https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v4_pre/yolov4-tiny.weights", 24251276,
          "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87", "cfg/yolov4-tiny.cfg",
          "COCO detector, AlexeyAB's darknet"),
    Model("yolo-fastest-1.1",
          "https://raw.githubusercontent.com/dog-qiuqiu/Yolo-Fastest/master/ModelZoo/yolo-fastest-1.1_coco/"
          "yolo-fastest-1.1.weights", 1384268,
          "1c445c42bbd6df63edea2cc69f99667b5650d663ca11e34b116240740cd42890", "cfg/yolo-fastest-1.1.cfg",
          "COCO detector, AlexeyAB's darknet"),
)}


def cache_dir():
    home = os.environ.get("PYDARKNET_HOME")
    if home:
        return Path(home)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pydarknet"


def model_of_file(file_name):
    """The model whose weights file is called `file_name`, or None."""
    return next((m for m in MODELS.values() if m.file_name == file_name), None)


def cached_file(file_name):
    """The downloaded file of that name, or None."""
    path = cache_dir() / file_name
    return path if path.is_file() else None


def megabytes(size):
    return f"{size / 1e6:.1f} MB"


def listing():
    """The lines `pydarknet download` prints without a NAME."""
    rows = [("name", "size", "cfg", "cached", "what")]
    for m in MODELS.values():
        rows.append((m.name, megabytes(m.size), m.cfg, "yes" if cached_file(m.file_name) else "no", m.what))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    return lines + [f"cache: {cache_dir()} (PYDARKNET_HOME chooses another)"]


def model_named(name):
    if name in MODELS:
        return MODELS[name]
    model = model_of_file(name)   # `tiny.weights` names `tiny` too
    if model is None:
        raise DarknetError(f"{name}: no such model; `pydarknet download` lists them: {', '.join(MODELS)}")
    return model


def download(model, mirror=None, progress=None):
    """The model's weights in the cache, fetched (or its partial download finished) when not there yet.
    `mirror`: a base URL serving the file under its own name. `progress(done, total)` is called as bytes
    arrive. Returns (path, whether it was fetched now)."""
    target = cache_dir() / model.file_name
    if target.is_file():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    url = f"{mirror.rstrip('/')}/{model.file_name}" if mirror else model.url
    fetch(url, partial, model.size, progress)
    size = partial.stat().st_size
    if size < model.size:
        raise DarknetError(f"{url}: the connection ended after {size} of {model.size} bytes; run the command "
                           f"again to resume")
    digest = sha256_of(partial)
    if size != model.size or digest != model.sha256:
        partial.unlink()
        raise DarknetError(f"{url}: not the published {model.file_name} ({size} bytes, SHA-256 {digest}; expected "
                           f"{model.size} bytes, SHA-256 {model.sha256}): deleted")
    os.replace(partial, target)
    return target, True


def fetch(url, partial, size, progress):
    """Append to `partial` what the server has after the bytes already there (all of it when the server
    ignores the Range). A connection lost midway keeps what arrived."""
    have = partial.stat().st_size if partial.exists() else 0
    if have >= size:
        return   # complete already: the checksum decides
    import urllib.error   # here, not at the top: every command that loads weights imports this module
    import urllib.request
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as e:
        raise DarknetError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DarknetError(f"{url}: {getattr(e, 'reason', e)}; without a network, `--mirror BASE_URL` fetches the "
                           f"file from a server you name, or copy {partial.name[:-5]} into {partial.parent}") from None
    with response:
        if have and response.status != 206:
            have = 0
        done = have
        with open(partial, "ab" if have else "wb") as f:
            while chunk := read_chunk(response, url, done, size):
                f.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(min(done, size), size)


def read_chunk(response, url, done, size):
    import http.client
    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as e:
        raise DarknetError(f"{url}: connection lost after {done} of {size} bytes ({e.__class__.__name__}); "
                           f"run the command again to resume") from None


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def missing_weights_message(name):
    """What to say about a weights file that exists nowhere: the download command, when pydarknet knows it."""
    model = model_of_file(Path(name).name)
    if model is not None:
        return f"{name}: no such file; `pydarknet download {model.name}` fetches it into {cache_dir()}"
    return f"{name}: no such file (`pydarknet download` lists the official weights it can fetch)"
