"""Turning user input into clean arrays, or a clear exception saying what to do.

Everything here runs once per model, before any numerical work: response
coding for each family, NaN/inf policy (``missing="none"`` raises,
``"drop"`` drops rows consistently across every array), offsets and exposure,
and the group column.
"""
from __future__ import annotations

import difflib
import re
import warnings

import numpy as np
import pandas as pd

from ..core.spec.errors import MixedGLMInputError
from ..core.spec.family import FAMILY_NAMES, LINKS, Family, distribution_named
from .sm_families import (statsmodels_distribution, statsmodels_family, statsmodels_link,
                          supported_text)

__all__ = ["MixedGLMInputError", "resolve_family", "family_from_name",
           "binomial_response", "poisson_response", "count_response", "positive_response",
           "check_constant_response",
           "prior_weights", "finite_mask", "DataWarning", "did_you_mean",
           "drop_unused_levels", "category_levels",
           "check_categorical_response", "response_label", "is_integer",
           "checked_count", "zero_part", "unit_interval_response", "hurdle_response"]


class DataWarning(UserWarning):
    """Something about the data the user should know (rows dropped, columns removed)."""


def _unsupported(family_text: str, link_text: str, dist) -> MixedGLMInputError:
    why = f"; {dist.link_hint}" if dist is not None and dist.link_hint else ""
    return MixedGLMInputError(f"family {family_text} with link {link_text} is not supported; "
                              f"use {supported_text()}{why}")


def resolve_family(family=None, link=None, default: str = "gaussian"):
    """(statsmodels family, :class:`~mlglm.core.spec.family.Family`) of what the user gave:
    the one place a family is read. Every layer then asks the ``Family`` (the model's
    ``fam``); the statsmodels object is kept as ``model.family`` for statsmodels'
    sake and not inspected again.

    ``family``: a statsmodels family object (``Binomial(link=Probit())``;
    ``NegativeBinomial(alpha=a)`` holds theta = 1 / a fixed, as ``sm.GLM`` holds alpha,
    ``alpha=nan`` estimates it), or a name: ``"binomial"``, ``"poisson"``,
    ``"negative_binomial"`` (theta estimated; also ``"nbinom2"``), ``"gamma"``,
    ``"gaussian"``, with a link as ``"binomial(link='probit')"``, ``"gamma(link='log')"``
    or ``link="probit"``; default links are statsmodels' (and R's): inverse for the
    Gamma. None: ``default``. A pair mlglm does not fit is a
    :class:`MixedGLMInputError`.
    """
    if family is None:
        family = default
    if isinstance(family, type):
        raise MixedGLMInputError("pass a family instance such as sm.families.Binomial(), "
                                 "not the class")
    if isinstance(family, Family):
        return statsmodels_family(family), family
    if isinstance(family, str):
        fam = _family_from_text(family, link)
        return statsmodels_family(fam), fam
    dist = statsmodels_distribution(family)
    link_obj = statsmodels_link(getattr(family, "link", None))
    if dist is None or link_obj is None or link_obj.name not in dist.kernels:
        raise _unsupported(type(family).__name__, type(getattr(family, "link", None)).__name__,
                           dist)
    fixed = None
    if dist.dispersion_fixable:         # NegativeBinomial(alpha): theta = 1 / alpha
        alpha = float(getattr(family, "alpha", np.nan))
        if np.isfinite(alpha):
            if alpha <= 0:
                raise MixedGLMInputError("NegativeBinomial(alpha=) must be positive (Var = mu + "
                                         "alpha mu^2); use family='negative_binomial' to "
                                         "estimate it")
            fixed = 1.0 / alpha
    return family, Family(dist, link_obj, dispersion=fixed)


def _family_from_text(family: str, link):
    name = family.strip().lower()
    m = re.fullmatch(r"(\w+)\s*\(\s*(?:link\s*=\s*)?['\"]?(\w+)['\"]?\s*\)", name)
    if m:
        name, link = m.group(1), m.group(2)
    try:
        dist = distribution_named(name)
    except ValueError:
        names = [repr(n) for n in FAMILY_NAMES]
        raise MixedGLMInputError(f"unknown family {family!r}; use {', '.join(names[:-1])} or "
                                 f"{names[-1]} (or a statsmodels family object)"
                                 + did_you_mean(name, FAMILY_NAMES)) from None
    if link is not None and link not in LINKS:
        raise MixedGLMInputError(f"unknown link {link!r}; use one of {', '.join(LINKS)}")
    link_obj = LINKS[link or dist.default_link]
    if link_obj.name not in dist.kernels:
        raise _unsupported(dist.statsmodels or dist.name, link_obj.statsmodels[0], dist)
    return Family(dist, link_obj)


def family_from_name(family, link=None):
    """A statsmodels family from a name such as ``"binomial"``, ``"gamma(link='log')"``
    (see :func:`resolve_family`); family objects pass through."""
    return resolve_family(family, link)[0]


def is_integer(value) -> bool:
    """A Python or numpy integer (not a bool, not a float such as 2.0)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def checked_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (Python or numpy) >= ``minimum``; else
    a :class:`MixedGLMInputError` naming ``name``."""
    if not is_integer(value) or value < minimum:
        raise MixedGLMInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def did_you_mean(name, candidates) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``candidates``, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    if not close:
        low = {str(c).lower(): str(c) for c in candidates}
        close = [low[str(name).lower()]] if str(name).lower() in low else []
    return f"; did you mean {close[0]!r}?" if close else ""


def unexpected_keywords(function: str, given, valid) -> None:
    """``TypeError`` for the first of ``given`` not in ``valid``, with a did-you-mean."""
    for name in given:
        if name not in valid:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}"
                            + did_you_mean(name, valid))


def drop_unused_levels(data: pd.DataFrame, columns) -> tuple[pd.DataFrame, dict]:
    """``data`` with the categories no row uses removed from the categorical
    ``columns`` (left over after filtering; patsy would make all-zero dummy columns
    of them), and {column: [dropped levels]}.

    This is the one place where the fit's coding of a categorical column is decided
    (what :func:`category_levels` then records and
    :func:`mlglm.design.factors.match_categories` applies to new data): the categories in
    their declared order, less those no row uses. A ``DataWarning`` names the levels
    dropped (the summary repeats it).
    """
    dropped = {}
    for c in columns:
        col = data[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            present = set(col.dropna().unique())
            unused = [lev for lev in col.cat.categories if lev not in present]
            if unused:
                dropped[c] = unused
    if dropped:
        data = data.assign(**{c: data[c].cat.remove_unused_categories() for c in dropped})
        text = "; ".join(f"{c}: {', '.join(map(str, levels))}" for c, levels in dropped.items())
        warnings.warn(f"unused categories dropped (no row of the data has them): {text}. "
                      "The model has no coefficient for them; predictions on frames with "
                      "the same categorical dtype work, rows with these levels are refused",
                      DataWarning, stacklevel=4)
    return data, dropped


def category_levels(data: pd.DataFrame, columns) -> dict:
    """{column: [levels]} of the categorical ``columns`` of ``data`` as the fit codes
    them (after :func:`drop_unused_levels`; string columns, made sorted categoricals
    for patsy, included)."""
    out = {}
    for c in columns:
        if c in data.columns and isinstance(data[c].dtype, pd.CategoricalDtype):
            out[c] = list(data[c].cat.categories)
    return out


def check_categorical_response(data: pd.DataFrame, lhs: str, fam: Family) -> None:
    """mlglm's message for a non-numeric response column that cannot be modelled:
    a binomial response needs exactly two levels; other families need numbers."""
    name = lhs.strip()
    if name not in data.columns:
        return
    col = data[name]
    numeric = (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)) and \
        not isinstance(col.dtype, pd.CategoricalDtype)
    if numeric:
        return
    levels = list(pd.unique(col.dropna()))
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = [lev for lev in col.cat.categories if lev in set(levels)]
    shown = ", ".join(map(repr, levels[:6])) + (" ..." if len(levels) > 6 else "")
    if fam.is_binomial and len(levels) > 2:
        last = levels[-1]
        raise MixedGLMInputError(
            f"the response {name!r} has {len(levels)} levels ({shown}); a binomial model "
            f"needs two: model one level against the others, e.g. "
            f"data[{name + '_' + str(last)!r}] = data[{name!r}] == {last!r}, or merge levels")
    if not fam.is_binomial:
        raise MixedGLMInputError(f"the response {name!r} is not numeric ({shown}); a "
                                 f"{fam.label} model needs numbers")


def response_label(names):
    """The name of what a binomial model of a two-level categorical response models:
    patsy codes ``use`` as the columns ``use[N]``, ``use[Y]``; the second level is the
    "success", so the label is ``use[Y]``. None when ``names`` is not such a pair."""
    if names is None or len(names) != 2:
        return None
    parts = [re.fullmatch(r"(.+)\[(.+)\]", str(n)) for n in names]
    if all(parts) and parts[0].group(1) == parts[1].group(1):
        return str(names[1])
    return None


def binomial_response(endog, n_trials=None, names=None):
    """(successes, trials) from 0/1, bool, a 2-level dummy pair, proportions with
    ``n_trials``, or a two-column (successes, failures) response."""
    y = np.asarray(endog)
    if y.dtype == bool:
        y = y.astype(float)
    y = np.asarray(y, dtype=float)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.shape[1] != 2:
            raise MixedGLMInputError("a binomial response must be one column or two "
                                     "(successes, failures)")
        if n_trials is not None:
            raise MixedGLMInputError("give either a two-column (successes, failures) response "
                                     "or n_trials=, not both")
        dummy_pair = (names is not None and len(names) == 2
                      and all("[" in str(nm) for nm in names)
                      and np.all(y.sum(axis=1) == 1) and np.all((y == 0) | (y == 1)))
        if dummy_pair:  # a two-level categorical response: the second level is "success"
            return y[:, 1].copy(), np.ones(y.shape[0])
        s, f = y[:, 0], y[:, 1]
        if np.any(s < 0) or np.any(f < 0) or np.any(s != np.round(s)) or np.any(f != np.round(f)):
            raise MixedGLMInputError("successes and failures must be non-negative integers")
        return s.copy(), s + f
    if n_trials is not None:
        m = np.asarray(n_trials, dtype=float).reshape(-1)
        if m.size == 1:                   # a scalar: the same trials for every row
            m = np.full(y.shape, m[0])
        if m.shape != y.shape:
            raise MixedGLMInputError(f"n_trials has {m.size} values for {y.size} observations")
        if np.any(m <= 0) or np.any(m != np.round(m)):
            raise MixedGLMInputError("n_trials must be positive integers")
        if np.any((y < 0) | (y > 1)):
            raise MixedGLMInputError("with n_trials= the response must be a proportion in [0, 1]")
        s = y * m
        if np.any(np.abs(s - np.round(s)) > 1e-6):
            raise MixedGLMInputError("response * n_trials must be whole numbers of successes")
        return np.round(s), m
    if np.any((y != 0) & (y != 1)):
        bad = y[(y != 0) & (y != 1)][:3]
        raise MixedGLMInputError(
            f"a binomial response must be 0/1 (found e.g. {list(bad)}); for counts out of n "
            "trials pass proportions with n_trials= or a two-column successes + failures response")
    return y.copy(), np.ones_like(y)


def poisson_response(endog):
    return count_response(endog, "Poisson")


def _one_column(endog, message):
    """The response as a float vector (an n x 1 column is squeezed); else ``message``."""
    y = np.asarray(endog, dtype=float)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise MixedGLMInputError(message)
    return y


def count_response(endog, family="negative binomial"):
    """A single column of non-negative whole numbers (Poisson, negative binomial)."""
    y = _one_column(endog, f"a {family} response must be a single column of counts")
    if np.any(y < 0):
        raise MixedGLMInputError(f"{family} counts must be non-negative (found negative values)")
    if np.any(y != np.round(y)):
        raise MixedGLMInputError(f"{family} counts must be whole numbers; for rates use counts "
                                 "with exposure= (or offset=log(exposure))")
    return y


def zero_part(family, fam: Family, exog_zi):
    """(statsmodels-side family, Family) with the zero part applied: a zero-part design
    (``ziformula`` with columns) turns a Poisson or negative binomial into its
    zero-inflated version and is required by a hurdle (truncated) family; any other
    family with one is refused, and so is a zero-inflated family named directly without
    one."""
    has = exog_zi is not None
    if fam.zero_part is not None:
        if not has:
            kind = ("a hurdle model: Pr(y = 0) is the zero part's" if fam.zero_part == "hurdle"
                    else "a zero-inflated model")
            raise MixedGLMInputError(
                f"family {fam.name!r} is {kind}, and needs ziformula= (e.g. ziformula='~ 1' "
                "for a constant zero part, or '~ x' for a zero part that depends on x)")
        return family, fam
    if not has:
        return family, fam
    try:
        zi = fam.with_zero_inflation()
    except ValueError as exc:
        raise MixedGLMInputError(str(exc)) from None
    return family, zi       # the family as given stays the model's (update() passes it on)


def unit_interval_response(endog, family="beta"):
    """A single column strictly between 0 and 1 (the beta)."""
    y = _one_column(endog, f"a {family} response must be a single column")
    bad = y[~((y > 0) & (y < 1))]
    if bad.size:
        raise MixedGLMInputError(
            f"a {family} response must be strictly between 0 and 1 (found {bad.size} values "
            f"outside (0, 1), e.g. {list(bad[:3])}). Usual fixes: the Smithson-Verkuilen "
            "squeeze y' = (y (n - 1) + 0.5) / n (n the number of rows), or a zero-one-inflated "
            "model for exact 0s and 1s; proportions of counts are binomial (successes + "
            "failures ~ ...)")
    return y


def hurdle_response(y, family="hurdle"):
    """A hurdle model's counts must have zeros and positive counts: its zero part is the
    probability of a zero, its count part the distribution of the positives."""
    if not np.any(y == 0):
        raise MixedGLMInputError(f"a {family} model needs zeros in the response (there are "
                                 "none); fit the count model to the positive counts instead")
    if not np.any(y > 0):
        raise MixedGLMInputError(f"a {family} model needs positive counts in the response "
                                 "(every count is 0)")


def positive_response(endog, family="Gamma"):
    """A single column of positive numbers (Gamma)."""
    y = _one_column(endog, f"a {family} response must be a single column")
    bad = y[~(y > 0)]
    if bad.size:
        raise MixedGLMInputError(
            f"a {family} response must be positive (found {bad.size} values <= 0, e.g. "
            f"{list(bad[:3])}); model exact zeros separately or use a count family")
    return y


def check_constant_response(fam: Family, y, m, freq=None) -> None:
    """Refuse a response at a degenerate constant (issue 25): every binomial trial a
    failure or every one a success, every count 0, or a Gaussian or Gamma response with
    one value. Such data put the fixed-effects estimates at infinity (an intercept
    running to -inf: a fit "converged" at -100 with SEs of 1e20) or the residual
    variance at 0, and no variance component can be estimated; lme4 stops with
    "Response is constant". Rows with frequency weight 0 do not count."""
    y = np.asarray(y, dtype=float)
    m = np.broadcast_to(np.asarray(m, dtype=float), y.shape)
    if freq is not None:
        keep = np.asarray(freq, dtype=float) > 0
        y, m = y[keep], m[keep]
    if y.size == 0:
        return
    if fam.is_binomial:
        if np.all(y == 0):
            what, p, inf = "every trial is a failure (y = 0 throughout)", 0, "-infinity"
        elif np.all(y == m):
            what, p, inf = "every trial is a success (y = 1 throughout)", 1, "+infinity"
        else:
            return
        why = f"the probability estimate is {p} (the intercept runs off to {inf})"
    elif fam.is_count:
        if not np.all(y == 0):
            return
        what = "every count is 0"
        why = "the mean estimate is 0 (the intercept runs off to -infinity)"
    else:                           # a continuous response (Gaussian, Gamma)
        if np.ptp(y) > 0:
            return
        what = f"every value is {y[0]:g}"
        why = ("the residual variance" if fam.is_gaussian else "the dispersion") + \
            " estimate would be 0"
    raise MixedGLMInputError(
        f"the response is constant: {what}. No model can be fitted to it: {why}, and no "
        "random-effect variance can be estimated (lme4: 'Response is constant'). Check the "
        "response column and any subset= or missing-value filtering")


def prior_weights(weights, n, name):
    """(n,) float prior weights, or None: finite, non-negative, one per row, not all zero."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.size == 1:
        w = np.full(n, w[0])
    if w.size != n:
        raise MixedGLMInputError(f"{name} has {w.size} values for {n} rows")
    if not np.all(np.isfinite(w)):
        raise MixedGLMInputError(f"{name} must be finite (found NaN or inf); drop those rows or "
                                 "give them weight 0")
    if np.any(w < 0):
        raise MixedGLMInputError(f"{name} must be non-negative (found {int(np.sum(w < 0))} "
                                 "negative values)")
    if not np.any(w > 0):
        raise MixedGLMInputError(f"{name} are all zero: there is nothing to fit")
    return w


def finite_mask(arrays: dict) -> np.ndarray:
    """Rows where every named array is finite (non-numeric arrays: not null)."""
    mask = None
    for name, a in arrays.items():
        if a is None:
            continue
        a = np.asarray(a)
        if a.dtype.kind in "fc":
            ok = np.isfinite(a)
        elif a.dtype.kind in "iub":
            ok = np.ones(a.shape, bool)
        else:
            ok = ~pd.isnull(a)
        if ok.ndim > 1:
            ok = ok.reshape(ok.shape[0], -1).all(axis=1)
        mask = ok if mask is None else mask & ok
    return mask


def report_nonfinite(arrays: dict, missing: str):
    """Raise (missing='none') or return the keep-mask and warn (missing='drop')."""
    mask = finite_mask(arrays)
    if mask is None or mask.all():
        return None
    bad = [name for name, a in arrays.items()
           if a is not None and not finite_mask({name: a}).all()]
    nbad = int((~mask).sum())
    if missing != "drop":
        raise MixedGLMInputError(
            f"{nbad} rows contain NaN or inf (in {', '.join(bad)}); pass missing='drop' to "
            "drop them or fill them in first")
    warnings.warn(f"dropped {nbad} rows with NaN or inf (in {', '.join(bad)})", DataWarning,
                  stacklevel=4)
    return mask


def is_dask_frame(data) -> bool:
    """A dask DataFrame, recognised without importing dask (an optional extra)."""
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(
        data, "npartitions")
