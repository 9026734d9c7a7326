"""Darknet's programs (its examples/: detector, classifier, rnn, nightmare), callable without click.
May import: tasks, network, results, kernels, files.

- images.py: image paths (arguments or stdin), batches through a network, a Dask cluster, the network's loading
- detector.py: `detect`, `detector test`, `demo`
- classifier.py: `classify`, `classifier predict`
"""
