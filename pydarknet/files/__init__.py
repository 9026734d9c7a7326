"""The files darknet reads and writes: cfg, .data, .names, weights, labels, images, downloads.
May import: nothing else of pydarknet's (the bottom)."""
