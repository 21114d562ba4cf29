"""What names a formula can use, and where they come from.

A formula is Python code evaluated by patsy, as in statsmodels: a name in
``y ~ I(x * SCALE) + sq(z)`` or in ``offset(log(n))`` is looked up, in this order,

1. among the columns of the data (``x``, ``z``, ``n``);
2. in the caller's namespace -- the local and then the global names of the code
   that called ``from_formula``, ``glmer`` or ``lmer`` (``SCALE``, ``sq``, ``np``),
   or the namespace given as ``eval_env=`` (statsmodels' keyword: an int k for k
   frames further up the stack, -1 for none, a dict, or a patsy ``EvalEnvironment``);
3. in lme4-style strings only (``glmer``, ``lmer``, ``update``): R's spellings of
   common functions, :data:`R_FUNCTIONS` (``log``, ``exp``, ``sqrt``, ``factor``,
   ``scale``, ...) and ``np``/``numpy``, for the names step 2 did not define -- a
   function of your own called ``log`` wins, as Python scoping would have it;
4. patsy's built-ins (``C``, ``I``, ``Q``, ``center``, ``standardize``, ``bs``, ...)
   and Python's (``abs``, ``round``, ``len``, ...).

This is patsy's own order (data, then the environment, then its built-ins), so the
fixed part, ``re_formula``, ``vc_formula``, the effects of bar terms and the
``offset()``/``cbind()`` expressions of an lme4 string
(:func:`mlglm.design.expressions.evaluate`) all see the same names.
Only the caller's names that the formulas spell are kept (:func:`formula_names`),
as patsy keeps them: the model holds them in ``model.formula_env`` so that
``update()`` refits in the environment of the original fit (names it adds resolve
in the caller of ``update``). They are not pickled (modules and lambdas do not
pickle); statsmodels re-parses a loaded model's formula in the loader's namespace.

Sharded fits (:mod:`mlglm.distributed`) rebuild the model on every shard with
``eval_env={"np": numpy, "numpy": numpy}``: a worker's formula sees the columns,
``np``/``numpy`` and patsy's and Python's built-ins, not the caller's names (so R's
spellings in lme4 strings are refused on a Dask DataFrame, saying what to write).

A formula is not a sandbox. It runs as Python in your namespace, with Python's
built-ins, exactly as patsy and statsmodels run it: never build a formula from
text you do not trust.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import patsy

__all__ = ["R_FUNCTIONS", "FormulaNames", "capture", "formula_names", "identifiers",
           "r_functions"]

_IDENTIFIER = re.compile(r"[^\W\d]\w*")


def identifiers(*texts) -> set:
    """Every Python identifier spelt in ``texts`` (``np.log(x)`` gives np, log, x)."""
    out = set()
    for text in texts:
        if text:
            out.update(_IDENTIFIER.findall(str(text)))
    return out


class RScale:
    """R's ``scale(x)``: (x - mean) / sd with the sample SD (n - 1 divisor), the mean
    and SD of the fit's data kept for new data (a patsy stateful transform).

    patsy's own ``scale`` is ``standardize`` with the n divisor, whose coefficients
    differ from R's by sqrt(n / (n - 1)); in lme4-style strings ``scale`` is R's.
    """

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.sd = None

    def memorize_chunk(self, x):
        # Chan et al.'s pairwise update of (n, mean, sum of squares about the mean):
        # exact to rounding whatever the mean, chunk by chunk
        x = np.asarray(x, dtype=float).ravel()
        if x.size == 0:
            return
        n_b, mean_b = x.size, float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.mean += delta * n_b / n
        self.n = n

    def memorize_finish(self):
        self.sd = np.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else np.nan

    def transform(self, x):
        return (np.asarray(x, dtype=float) - self.mean) / self.sd


def r_functions() -> dict:
    """R's spellings (lme4-style strings): elementwise numpy functions, ``factor(x)``
    as patsy's ``C(x)`` and ``scale(x)`` with R's sample SD; ``np``/``numpy`` too, which
    mlglm's own ``offset()`` evaluator always offered."""
    return {"log": np.log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p,
            "exp": np.exp, "expm1": np.expm1, "sqrt": np.sqrt, "abs": np.abs,
            "round": np.round, "floor": np.floor, "ceiling": np.ceil,
            "factor": patsy.builtins.C, "scale": patsy.stateful_transform(RScale), "np": np,
            "numpy": np}


#: The R functions an lme4-style string may call when the caller's namespace does
#: not define the name (``as.factor(x)`` is written ``factor(x)`` by the parser).
R_FUNCTIONS = ("log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs", "round",
               "floor", "ceiling", "factor", "scale")


class FormulaNames(dict):
    """The caller's names a model's formulas use: {name: object}.

    A dict that pickles as an empty one (modules and lambdas do not pickle).
    """

    def __reduce__(self):
        return (FormulaNames, ())


def capture(eval_env, depth: int):
    """The caller's namespace as one mapping, statsmodels' ``eval_env`` semantics.

    ``eval_env`` None or 0: the frame ``depth`` levels above the function calling
    :func:`capture` (``depth=1`` is that function's caller); an int k > 0: k frames
    further up; -1: no names; a mapping: itself; a patsy ``EvalEnvironment``: its
    namespaces. Returns a mapping (read only).
    """
    if eval_env is None:
        eval_env = 0
    if isinstance(eval_env, (Mapping, patsy.eval.VarLookupDict)):   # a captured namespace
        return eval_env
    if isinstance(eval_env, patsy.EvalEnvironment):
        return eval_env.namespace
    if isinstance(eval_env, (int, np.integer)) and not isinstance(eval_env, bool):
        if eval_env == -1:
            return {}
        if eval_env < -1:
            raise ValueError(f"eval_env must be >= -1, got {eval_env}")
        try:
            return patsy.EvalEnvironment.capture(int(eval_env) + depth + 1).namespace
        except ValueError as exc:   # patsy: "call-stack is not that deep!"
            raise ValueError(f"eval_env={eval_env} reaches beyond the top of the call stack; "
                             "give fewer frames, or a dict of names") from exc
    raise TypeError("eval_env must be an int (frames up the stack; -1 for no names), a dict "
                    f"of names or a patsy EvalEnvironment, got {type(eval_env).__name__}")


def formula_names(namespace, texts, r_names: bool = False) -> FormulaNames:
    """The names of ``namespace`` spelt in ``texts``; with ``r_names`` also R's
    functions (:data:`R_FUNCTIONS`) for the names ``namespace`` does not define."""
    used = identifiers(*texts)
    out = FormulaNames()
    if r_names:
        wanted = used.intersection(R_FUNCTIONS + ("np", "numpy"))
        if wanted:
            fallbacks = r_functions()
            out.update({k: fallbacks[k] for k in wanted})
    for name in used:
        try:
            out[name] = namespace[name]
        except KeyError:
            continue
    return out
