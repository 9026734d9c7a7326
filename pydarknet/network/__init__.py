"""The network: built from a cfg, run forward, backward and update, its weights loaded and saved.
May import: results, kernels, files."""
