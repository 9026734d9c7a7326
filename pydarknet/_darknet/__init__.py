"""The top-level module `darknet` (pyproject.toml installs this folder under that name): the AlexeyAB fork's
darknet.py API, which pydarknet.darknet implements, for the scripts written against it (`import darknet`)."""
from pydarknet.darknet import *  # noqa: F401,F403
from pydarknet.darknet import __all__  # noqa: F401
