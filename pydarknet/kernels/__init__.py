"""Numba kernels: every loop over pixels, boxes or weights lives here, compiled once and cached."""
