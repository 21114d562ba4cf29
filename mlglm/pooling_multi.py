r"""The pooling comparison for a fit with several grouping factors: its lowest level.

With several factors there are several kinds of "group". The comparison of
:mod:`mlglm.pooling` is made for the **innermost** factor -- the lowest level:
the one every other factor it is nested in contains (class in
``(1 | school/class)``, school in ``(1 | lea) + (1 | school)``); with crossed
factors the one with the most levels (subject in ``(1 | subject) + (1 | item)``).
For a level c of that factor:

* **no pooling**: one GLM on the rows of c alone;
* **partial pooling**: the coefficients the mixed model uses for the rows of c,

  .. math:: \hat\beta^{p}_c = \hat\gamma + \hat b_c + \sum_{f \supset c} \hat b_{f(c)},

  the fixed effects plus the conditional modes of c and of every factor c is
  nested in (its school, its LEA). A crossed factor varies within c, so its
  effects average out over c's rows and are left at 0;
* **complete pooling**: one GLM on all rows, as for one factor.

Shrinkage is measured toward the population value :math:`\hat\gamma`, so for a
nested fit it is the combined shrinkage of the level's own effect and its
parents' (a class in a school far from the mean is pulled towards its school,
and the school towards :math:`\hat\gamma`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .core.terms import nests_in

__all__ = ["innermost_term", "multi_partial"]


def innermost_term(terms) -> int:
    """Index of the lowest-level factor: the innermost of a nested chain, else the
    factor with the most levels (the first such in term order)."""
    order = terms.nesting_order()
    if order is not None:
        return order[0]
    sizes = [t.n_levels for t in terms]
    return int(np.argmax(sizes))


def _fe_columns(term, fe_names) -> list[str]:
    """The fixed effect each of the term's random effects varies (intercept -> 'Intercept')."""
    out = []
    for k, nm in enumerate(term.column_names):
        if nm == "Intercept" or (np.all(term.Z[:, k] == 1.0) and "Intercept" in fe_names):
            if "Intercept" not in fe_names:
                raise ValueError("the random intercept has no fixed intercept to pool with")
            out.append("Intercept")
        elif nm in fe_names:
            out.append(str(nm))
        else:
            raise ValueError(f"random effect {nm!r} of {term.name} has no matching fixed "
                             "effect; the pooling comparison needs every random term in the "
                             "fixed part")
    return out


def multi_partial(results, names):
    """(gamma, {level: partial-pooling coefficients}, fixed effects with random effects,
    level label of every row, factor name) for the innermost factor (module docstring)."""
    from .factors import term_labels
    model = results.model
    terms = model.re_terms
    k = innermost_term(terms)
    inner = terms[k]
    fe = pd.Series(np.asarray(results.fe_params, dtype=float),
                   index=list(getattr(results.fe_params, "index", names)))
    gamma = fe.reindex(names).to_numpy()
    if np.any(np.isnan(gamma)):
        raise ValueError("the mixed model's fixed effects do not match the formula's columns")
    included = [k] + [j for j, t in enumerate(terms) if j != k and nests_in(inner, t)]
    _, first_row = np.unique(inner.codes, return_index=True)     # a row of every level
    coefs = np.tile(gamma, (inner.n_levels, 1))
    with_re = []
    for j in included:
        t = terms[j]
        cols = _fe_columns(t, names)
        with_re += cols
        b = np.asarray(results.outcome.b[j], dtype=float)[t.codes[first_row]]
        for c, name in enumerate(cols):
            coefs[:, names.index(name)] += b[:, c]
    labels = term_labels(inner)
    partial = {g: coefs[i] for i, g in enumerate(labels)}
    groups = np.asarray(labels, dtype=object)[inner.codes]
    return gamma, partial, list(dict.fromkeys(with_re)), groups, inner.name
