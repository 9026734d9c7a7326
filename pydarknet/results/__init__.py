"""What the outputs mean: boxes, NMS, detections, classes, word trees, tiles, tracks, printed lines.
May import: kernels, files."""
