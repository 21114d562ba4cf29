"""Finite-difference gradients for the gradient checks (one copy for every test module).

``fd_gradient`` is central differences with one Richardson extrapolation,
g_i = (4 D(h) - D(2h)) / 3 with D(s) = (f(x + s e_i) - f(x - s e_i)) / (2 s), error O(h^4);
each value restarts the conditional modes from zero (``obj.u = None``) so that a warm
start cannot leak from one evaluation into the next.
"""
from __future__ import annotations

import numpy as np


def value_at(obj, x):
    """Objective at x with the conditional modes started from zero (no warm start)."""
    obj.u = None
    return obj(x)


def fd_gradient(obj, x, h=1e-3):
    """Central differences with one Richardson extrapolation (error O(h^4))."""
    g = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = 1.0

        def d(s):
            return (value_at(obj, x + s * e) - value_at(obj, x - s * e)) / (2 * s)

        g[i] = (4 * d(h) - d(2 * h)) / 3
    return g
