"""Evaluating an R-style column expression, such as ``size - incidence`` or ``log(n)``,
on a DataFrame.

lme4 formulas compute some columns inline: the failures of ``cbind(s, n - s)`` and
the offset of ``offset(log(n))``. :func:`evaluate` computes such an expression from
the data's columns and numpy's elementwise functions only, so it does not depend on
what else the data contain: a name in call position (``log`` in ``log(n)``) is a
function, any other name a column, so columns named ``I`` or ``log`` change nothing.
"""
from __future__ import annotations

import ast

import numpy as np
import pandas as pd

__all__ = ["evaluate"]

#: functions an expression may call (R's names, applied elementwise)
_FUNCTIONS = {"log": np.log, "log1p": np.log1p, "log2": np.log2, "log10": np.log10,
              "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "round": np.round,
              "floor": np.floor, "ceiling": np.ceil, "np": np, "numpy": np}


_PREFIX = "__mlglm_function_"


class _Functions(ast.NodeTransformer):
    """Rename the names in function position (``log`` in ``log(n)``, ``np`` in
    ``np.log(n)``) so that they never resolve to a column of the same name."""

    def visit_Call(self, node):
        self.generic_visit(node)
        target = node.func
        while isinstance(target, ast.Attribute):
            target = target.value
        if isinstance(target, ast.Name) and target.id in _FUNCTIONS:
            target.id = _PREFIX + target.id
        return node


class _Names(dict):
    """Name lookup for :func:`evaluate`: functions in call position, else data columns."""

    def __init__(self, data: pd.DataFrame):
        super().__init__()
        self.data = data

    def __missing__(self, key):
        if key.startswith(_PREFIX):
            return _FUNCTIONS[key[len(_PREFIX):]]
        if key in self.data.columns:
            return self.data[key].to_numpy()
        raise NameError(f"{key!r} is not a column of the data (functions: "
                        f"{', '.join(k for k in _FUNCTIONS if k not in ('np', 'numpy'))})")


def evaluate(expr: str, data: pd.DataFrame) -> np.ndarray:
    """The values of ``expr`` (Python/R arithmetic on column names) for every row of
    ``data``, as a float array of length ``len(data)``.

    Raises ``ValueError`` naming the expression when it cannot be evaluated.
    """
    try:
        tree = _Functions().visit(ast.parse(expr.strip(), mode="eval"))
        code = compile(ast.fix_missing_locations(tree), "<formula>", "eval")
        value = eval(code, {"__builtins__": {}}, _Names(data))  # noqa: S307 - data names only
    except (NameError, SyntaxError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"cannot evaluate {expr!r} on the data: {exc}") from exc
    out = np.asarray(value, dtype=float)
    if out.ndim == 0:
        out = np.full(len(data), float(out))
    if out.shape != (len(data),):
        raise ValueError(f"{expr!r} evaluates to shape {out.shape}, not one value per row")
    return out
