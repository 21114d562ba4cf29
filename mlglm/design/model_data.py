"""The model's data object: unpicklable wherever ``pickle.load`` is called, and
per-factor results passed through as they are.

statsmodels drops the patsy design (``model_spec``) when a formula-built model is
pickled and re-parses the formula when it is loaded, looking for the formula's names
in the caller's frames 2, 3, 1, 0 and 4 levels up. At the top level of a script or of
``python -c`` there are fewer frames than that, patsy gets ``None`` for a frame and the
load fails with ``AttributeError: 'NoneType' object has no attribute 'f_locals'`` -- for
any formula, even ``y ~ x``. :class:`FormulaPandasData` lets statsmodels try first
and, when it runs out of frames or meets a name they do not define, re-parses in the
namespace of ``__main__`` (where a script's names live) with R's function names of
lme4 strings (``log(x)``, ``factor(x)``: :mod:`mlglm.design.formula_env`) and numpy as ``np``
beneath it. Functions of the user's own must be defined where the model is loaded.
"""
from __future__ import annotations

from patsy import PatsyError
from statsmodels.base.data import PandasData

from .formula_env import r_functions

__all__ = ["FormulaPandasData", "robust_data"]


class FormulaPandasData(PandasData):
    """statsmodels' PandasData with an unpickling that does not depend on the stack, and
    that leaves values labelled per grouping factor alone."""

    def wrap_output(self, obj, how="columns", names=None):
        """statsmodels' labelling of a results attribute, except for a dict: with several
        grouping factors ``cov_re`` is {factor: DataFrame}, labelled already."""
        if isinstance(obj, dict):
            return obj
        return super().wrap_output(obj, how, names)

    def __setstate__(self, d):
        try:
            super().__setstate__(dict(d))
            return
        except (AttributeError, NameError, PatsyError):
            # patsy walked off the top of the stack, or the formula uses a name the
            # loader's frames do not define (an R spelling such as log(x) of glmer)
            if "restore_model_spec" not in d:
                raise
        import __main__
        from statsmodels.formula._manager import FormulaManager
        env = r_functions()            # R's spellings (mlglm.design.formula_env), then numpy
        env.update(vars(__main__))
        data = d["frame"] if "frame" in d else d["orig_endog"].join(d["orig_exog"])
        mgr = FormulaManager()
        try:
            mgr.get_matrices(d["formula"], data, eval_env=env, pandas=True)
        except (NameError, PatsyError) as exc:
            raise NameError(f"the model's formula {d['formula']!r} uses a name that is not "
                            f"defined where it is loaded ({exc}); define it (e.g. import your "
                            "function) before pickle.load") from exc
        d = dict(d)
        del d["restore_model_spec"]
        self.__dict__.update(d)
        self.model_spec = mgr.spec


def robust_data(data):
    """``data`` as a :class:`FormulaPandasData` when it is statsmodels' PandasData
    (the class is swapped in place: the same attributes, one method more)."""
    if type(data) is PandasData:
        data.__class__ = FormulaPandasData
    return data
