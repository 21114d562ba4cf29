"""Crossed factors: the blocked Cholesky factorisation (Laplace)."""
