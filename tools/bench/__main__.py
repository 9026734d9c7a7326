"""`python3 -m tools.bench` (make bench, make bench-train): peers.py."""
import sys

from .peers import main

sys.exit(main())
