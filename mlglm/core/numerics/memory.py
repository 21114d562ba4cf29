"""Memory estimates made before large arrays are allocated, and the budget they are held to.

Two structures grow beyond what a machine holds while their inputs still look small:

* the dense part of the blocked factorisation of several grouping factors
  (:mod:`mlglm.core.engines.crossed.blocked`): N_D x N_D for N_D random effects beyond the largest
  factor, held in about :data:`DENSE_COPIES_LMM` (linear mixed models) or
  :data:`DENSE_COPIES_GLMM` (GLMMs) copies at once -- the Schur complement, its factor
  and inverse, the fixed cross products, the second moments of the gradient;
* the adaptive quadrature grid (:mod:`mlglm.core.engines.blockdiag.aghq`, :mod:`mlglm.core.engines.nested.aghq`):
  rows x K^q nodes per chunk of groups (a chunk holds at least one whole group), in
  about :data:`GRID_COPIES` arrays of that size (linear predictor, kernel, its
  derivative, node weights per row, ...).

The copy counts were measured with ``tracemalloc`` (peak over a fit or a value and
gradient): crossed random intercepts with N_D = 2,000 and 3,000 (J1 = 2 x 10^4,
10^5 rows) gave 9.0 (LMM) and 14.0 (GLMM) copies of 8 N_D^2 bytes beyond a fixed
part; AGHQ value and gradient with 2 x 10^7 and 10^7 row-node elements per chunk gave
5.1 and 5.2 copies of 8 bytes per element.

The budget is the memory the operating system reports as available (Linux's
``MemAvailable`` in ``/proc/meminfo``), lowered to the process's address-space or
data-size limit (``ulimit -v``, ``/proc/self/limits``) if one is set. Where the system
does not say (no ``/proc``), no budget is known and only the fixed limits apply. Set
:data:`LIMIT` (bytes) to impose one. (Read with the built-in ``open``: the core imports
numpy and scipy only.)
"""
from __future__ import annotations

__all__ = ["LIMIT", "available_bytes", "format_bytes", "dense_block_bytes", "grid_bytes",
           "DENSE_COPIES_LMM", "DENSE_COPIES_GLMM", "GRID_COPIES"]

#: A fixed budget in bytes (None: what the machine has available).
LIMIT: int | None = None

DENSE_COPIES_LMM = 9
DENSE_COPIES_GLMM = 14
GRID_COPIES = 6


def available_bytes() -> float:
    """The memory budget in bytes (module docstring); ``inf`` when none is known."""
    if LIMIT is not None:
        return float(LIMIT)
    avail = _proc_value("/proc/meminfo", "MemAvailable:", 1, 1024)
    for key in ("Max address space", "Max data size"):
        limit = _proc_value("/proc/self/limits", key, len(key.split()), 1)
        if limit is not None:
            avail = limit if avail is None else min(avail, limit)
    return float("inf") if avail is None else float(avail)


def _proc_value(path: str, key: str, field: int, unit: int):
    """The number in field ``field`` of the line of ``path`` starting with ``key`` (times
    ``unit``), or None (no such file or line, or "unlimited")."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    value = line.split()[field]
                    return int(value) * unit if value.isdigit() else None
    except (OSError, IndexError, ValueError):
        return None
    return None


def format_bytes(n: float) -> str:
    """``1.5 GB``, ``820 MB`` (decimal units)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def dense_block_bytes(N_D: int, gaussian: bool) -> float:
    """Peak bytes of the dense part of the blocked factorisation (module docstring)."""
    copies = DENSE_COPIES_LMM if gaussian else DENSE_COPIES_GLMM
    return 8.0 * copies * float(N_D) ** 2


def grid_bytes(nodes: int, max_rows: int, chunk_elements: int = 2_000_000) -> float:
    """Peak bytes of one chunk of the quadrature grid: ``nodes`` = K^q per row, the
    largest (top-level) group with ``max_rows`` rows (a chunk holds at least one)."""
    return 8.0 * GRID_COPIES * max(float(chunk_elements), float(nodes) * float(max_rows))
