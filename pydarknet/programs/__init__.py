"""The work behind darknet's programs (darknet's examples/: detector.c, classifier.c, ...): each command of the
CLI is click options and one call into here, and the same calls work from Python without click.

- images.py: image paths (arguments or stdin), batches through a network, a Dask cluster, the network's loading
- detector.py: `detect`, `detector test`, `demo`
- classifier.py: `classify`, `classifier predict`
"""
