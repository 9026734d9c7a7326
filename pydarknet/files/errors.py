"""The errors pydarknet reports to its user as one line (no traceback unless --debug)."""


class DarknetError(Exception):
    """A problem with the user's files or arguments: printed as one line, without a traceback."""


def install_hint(extra):
    """How to install one of pydarknet's extras (it is not on the package index: from a checkout or a wheel)."""
    return (f"install pydarknet's {extra} extra: pip install -e '.[{extra}]' in a checkout, or "
            f"pip install 'dist/pydarknet-<version>-py3-none-any.whl[{extra}]' with the wheel")


class CfgError(DarknetError):
    pass


class WriteError(DarknetError):
    """A file that could not be written (weights.atomic_write): the file asked for and the system's reason."""

    def __init__(self, path, strerror):
        super().__init__(f"cannot write {path}: {strerror}")
        self.path, self.strerror = path, strerror


class Interrupted(KeyboardInterrupt):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP), handled: what was saved has been said on stderr (the command exits
    without another line, with `status` where it is given, else 128 + the signal's number)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status
