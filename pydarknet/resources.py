"""Finding the files a command names: as darknet does (relative to the working directory), then beside the
file that named them, then among the cfg/ and data/ files pydarknet ships."""
from pathlib import Path

from .config import DarknetError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = (ROOT, ROOT / "cfg", ROOT / "data")


def find_file(name, beside=None, what="file"):
    """The first existing path among: `name` itself, `name` next to `beside`, `name` in the shipped files."""
    path = Path(name)
    candidates = [path]
    if not path.is_absolute():
        if beside is not None:
            candidates.append(Path(beside).parent / path)
        candidates += [root / path for root in SHIPPED] + [root / path.name for root in SHIPPED]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DarknetError(f"{name}: no such {what}" + (f" (named in {beside})" if beside else ""))
