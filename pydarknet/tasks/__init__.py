"""What a user does with a network: predict, evaluate, train, anchors, export, video, Dask.
May import: network, results, kernels, files, and each other without a cycle."""
