"""Developer tools for a checkout, not shipped in the wheel: scripts run by path (`python3 tools/cli_reference.py`)
and the benchmarks that the Makefile runs from the repository root (`python3 -m tools.bench`)."""
