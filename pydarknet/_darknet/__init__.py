"""`import darknet`: the AlexeyAB fork's darknet.py API under its own name (pyproject installs it).
May import: pydarknet.darknet alone."""
from pydarknet.darknet import *  # noqa: F401,F403
from pydarknet.darknet import __all__  # noqa: F401
