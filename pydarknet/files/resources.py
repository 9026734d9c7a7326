"""Finding the files a command names: as darknet does (relative to the working directory), then beside the
file that named them, then among the cfg/ and data/ files pydarknet ships.

The repository's top-level cfg/ and data/ are the one source of truth. A wheel carries them as package data
(pyproject.toml maps them to pydarknet/_files/cfg and pydarknet/_files/data), found with importlib.resources;
a checkout (or an editable install) has no _files folder and uses the top-level folders themselves.
"""
import hashlib
import re
import tempfile
from importlib import resources
from pathlib import Path

from .errors import DarknetError, install_hint

CHECKOUT = Path(__file__).resolve().parents[2]

# A path with a URL scheme (s3://, gs://, http://, file://, ...): read through fsspec, not the file system.
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(name):
    return bool(URL.match(str(name)))


def read_url(url):
    """The bytes at `url`, through fsspec (a dependency of Dask), so that the workers of a cluster without a
    shared file system can read their images, cfg and weights. Raises OSError (FileNotFoundError when missing)."""
    try:
        import fsspec
    except ImportError:
        raise DarknetError(f"{url}: reading URLs needs fsspec ({install_hint('dask')})") from None
    with fsspec.open(url, "rb") as f:
        return f.read()


_copies = None   # the temporary folder of local_copy, removed when the process exits


def local_copy(name):
    """`name`, or for a URL a copy of what it names in a temporary folder: for the readers that need a file
    (a cfg, weights)."""
    global _copies
    if not is_url(name):
        return name
    if _copies is None:
        _copies = tempfile.TemporaryDirectory(prefix="pydarknet-")
    folder = Path(_copies.name) / hashlib.sha256(name.encode()).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    path = folder / Path(name).name
    if not path.exists():
        path.write_bytes(read_url(name))
    return str(path)


def shipped_root():
    """The folder holding pydarknet's cfg/ and data/: the installed package data, else the checkout's top."""
    packaged = resources.files('pydarknet') / "_files"
    if packaged.is_dir():
        return Path(str(packaged))
    return CHECKOUT


def shipped_roots():
    root = shipped_root()
    return root, root / "cfg", root / "data"


def find_file(name, beside=None, what="file"):
    """The first existing path among: `name` itself, `name` next to `beside`, `name` in the shipped files."""
    path = Path(name)
    candidates = [path]
    if not path.is_absolute():
        if beside is not None:
            candidates.append(Path(beside).parent / path)
        roots = shipped_roots()
        candidates += [root / path for root in roots] + [root / path.name for root in roots]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DarknetError(f"{name}: no such {what}" + (f" (named in {beside})" if beside else ""))


def find_argument(name):
    """A path given on the command line: as it is, unless it does not exist and names one of the shipped files
    the way darknet's own tree does (`cfg/yolov3.cfg`, `data/dog.jpg`), which is then used. Anything else is
    returned unchanged, so that its reader reports the missing file."""
    path = Path(name)
    if path.exists() or path.is_absolute() or path.parts[:1] not in (("cfg",), ("data",)):
        return name
    shipped = shipped_root() / path
    return str(shipped) if shipped.is_file() else name
