"""The files a detector's command loads: in darknet's order (`detector test DATA CFG WEIGHTS`, `detect CFG WEIGHTS`),
or in any order, told apart by extension as the Hank.ai fork's command line tells them apart: `.cfg`, `.weights`,
and `.names` (or `.data`) for the class names, so that no `.data` file is needed."""
from dataclasses import dataclass
from pathlib import PurePath

ROLES = {".cfg": "cfg", ".weights": "weights", ".names": "names", ".data": "names"}
METAVARS = {"names": "DATA", "cfg": "CFG", "weights": "WEIGHTS"}
KINDS = {"names": ".names or .data", "cfg": ".cfg", "weights": ".weights"}


class ArgumentsError(ValueError):
    """Arguments that cannot be told apart (the command line reports a usage error)."""


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
    that darknet's own order works with any file names; what is left is `rest`, in order (at most `most`)."""
    taken = {}
    for index, argument in enumerate(arguments):
        role = role_of(argument)
        if role is not None and role in taken:
            raise ArgumentsError(f"{arguments[taken[role]]} and {argument} are both {KINDS[role]} files: give one")
        if role is not None:
            taken[role] = index
    others = [index for index in range(len(arguments)) if index not in taken.values()]
    for role in slots:
        if role not in taken:
            if not others:
                raise ArgumentsError(f"Missing argument '{METAVARS[role]}'.")
            taken[role] = others.pop(0)
    if most is not None and len(others) > most:
        raise ArgumentsError(f"Got unexpected extra argument ({' '.join(arguments[i] for i in others[most:])})")
    return NetworkFiles(arguments[taken["cfg"]], arguments[taken["weights"]],
                        arguments[taken["names"]] if "names" in taken else None, tuple(arguments[i] for i in others))
