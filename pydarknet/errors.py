"""The errors pydarknet reports to its user as one line (no traceback unless --debug)."""


class DarknetError(Exception):
    """A problem with the user's files or arguments: printed as one line, without a traceback."""


class CfgError(DarknetError):
    pass
