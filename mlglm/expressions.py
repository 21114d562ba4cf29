"""Evaluating an R-style column expression, such as ``size - incidence`` or ``log(n)``,
on a DataFrame.

lme4 formulas compute some columns inline: the failures of ``cbind(s, n - s)`` and
the offset of ``offset(log(n))``. :func:`evaluate` computes such an expression from
the data's columns and numpy's elementwise functions only, so it does not depend on
what else the data contain: a column named ``I`` or ``log`` is a column, never the
function patsy would have looked up under that name.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["evaluate"]

#: functions an expression may call (R's names, applied elementwise)
_FUNCTIONS = {"log": np.log, "log1p": np.log1p, "log2": np.log2, "log10": np.log10,
              "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "round": np.round,
              "floor": np.floor, "ceiling": np.ceil, "np": np, "numpy": np}


class _Names(dict):
    """Name lookup for :func:`evaluate`: data columns first, then :data:`_FUNCTIONS`."""

    def __init__(self, data: pd.DataFrame):
        super().__init__()
        self.data = data

    def __missing__(self, key):
        if key in self.data.columns:
            return self.data[key].to_numpy()
        if key in _FUNCTIONS:
            return _FUNCTIONS[key]
        raise NameError(f"{key!r} is neither a column of the data nor one of "
                        f"{', '.join(k for k in _FUNCTIONS if k not in ('np', 'numpy'))}")


def evaluate(expr: str, data: pd.DataFrame) -> np.ndarray:
    """The values of ``expr`` (Python/R arithmetic on column names) for every row of
    ``data``, as a float array of length ``len(data)``.

    Raises ``ValueError`` naming the expression when it cannot be evaluated.
    """
    try:
        code = compile(expr, "<formula>", "eval")
        value = eval(code, {"__builtins__": {}}, _Names(data))  # noqa: S307 - data names only
    except (NameError, SyntaxError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot evaluate {expr!r} on the data: {exc}") from exc
    out = np.asarray(value, dtype=float)
    if out.ndim == 0:
        out = np.full(len(data), float(out))
    if out.shape != (len(data),):
        raise ValueError(f"{expr!r} evaluates to shape {out.shape}, not one value per row")
    return out
