"""Training, darknet's way: one step, the loop, the data pipelines, -gpus replicas, MPI ranks.
May import: the other tasks, network, results, kernels, files.

- step.py: one darknet train_network call (forward, backward, update) and the learning-rate schedule
- run.py: the `train` command's loop (batches, the per-iteration line, backups, chart, -map, EMA)
- data.py: pjreddie's augmentation pipeline and the loader threads; data_ab.py: the AlexeyAB fork's
  (run.detection_dataset chooses by the network's darknet); augment.py: what the two pipelines share
- replicas.py: -gpus's replicas in one process, their updates and rolling statistics averaged each step
- mpi.py: one replica (or -gpus's several) an MPI rank, the same averaging over MPI, rank 0 the one writer, and
  the faults of a rank

The network knows nothing of training: these functions take a network.
"""
