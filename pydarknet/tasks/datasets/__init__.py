"""A user's own data sets: exports of labelling tools converted to darknet's layout, checked, and shown.
May import: the other tasks, network, results, kernels, files.

- convert.py: `datasets convert voc|coco|yolo SRC OUT` (the readers are files/annotations.py)
- check.py: `datasets check DATA`, and the check `train` runs on its labels before the first iteration
- show.py: `datasets show DATA`, a picture of random images with their boxes, and the boxes' sizes
"""
