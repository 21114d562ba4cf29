"""Parametric bootstrap of a fit: simulate from it, refit, collect the estimates.

Each replicate r draws new random effects for every level of every term,
b_k = u_k L_k' with u_k standard normal and L_k L_k' = Sigma-hat_k (term order,
:func:`~mlglm.inference.marginal.draw_random_effects`), and a response from the fitted family at
eta = offset + X beta-hat + sum_k Z_k b_k and the fitted dispersion (negative binomial
theta, Gamma scale; Gaussian: plus N(0, sigma-hat^2 / v) noise), then refits the
same model by the same method, starting from the original estimates (lme4's
``bootMer(use.u = FALSE, type = "parametric")``). The refit goes straight to the
numerical core -- ``model.problem.with_response(y)`` (same design, new response; no
formula or statsmodels model per replicate), fitted by
:meth:`~mlglm.core.problem.Problem.fit_lmm` (Gaussian, REML or ML as fitted, from
the fit's theta) or by :func:`~mlglm.core.fit.optimize.fit_glmm` on
:meth:`~mlglm.core.problem.Problem.objective` (Laplace or AGHQ as fitted, from the
fit's (beta, theta[, t])) -- and the core picks the engine for the terms' structure
(the fast one-term engines for one grouping factor).

What is kept per replicate is the natural parameter vector -- fixed effects, then per
term the SDs and correlations in the order of
:class:`~mlglm.core.spec.natural_layout.NaturalLayout` (and sigma, or the dispersion) --
with its log-likelihood and convergence flag, and the refit itself (its
:class:`~mlglm.core.spec.record.CoreFit`: O(groups x q^2) numbers), so that
:meth:`BootstrapResult.replicate` gives a real results object of the refit -- a copy
of the model holding the replicate's response, with the refit's estimates, standard
errors, random effects and log-likelihood, made by the original results'
``rebuild(model, fit)`` -- and :meth:`BootstrapResult.apply` evaluates any statistic
on it (lme4's ``bootMer(fit, FUN)``) without fitting again. The replicate's response
is drawn again from its seed when needed (the draw is deterministic).

Reproducibility: replicate r uses its own generator,
``np.random.default_rng(SeedSequence(seed).spawn(n)[r])``, so the replicates
are the same for a seed whatever ``n_jobs`` is and in whichever order the
worker processes finish. Failed refits are kept as NaN rows, counted, and warned
about -- never dropped silently; so are replicates whose worker process died.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.spec.natural_layout import NaturalLayout
from ..core.fit.optimize import fit_glmm
from ..design.data_checks import MixedGLMInputError, checked_count, is_integer
from ..design.factors import random_part
from .marginal import draw_random_effects, draw_response, fit_dispersion, term_factors
from ..design.mixedlm_view import natural_label

__all__ = ["BootstrapResult", "bootstrap", "natural_estimates"]


@dataclass(eq=False)
class BootstrapResult:
    """Replicates of a parametric bootstrap.

    Attributes
    ----------
    estimates : Series, the original fit's natural parameters.
    replicates : DataFrame (n rows) of refitted natural parameters; NaN rows
        for failed refits.
    llf, converged : per-replicate log-likelihood and convergence flag.
    seed, n_failed, seconds : as named.
    results : the original fit.
    fits : per replicate, the refit (its :class:`~mlglm.core.spec.record.CoreFit`; None for
        failed refits).
    seeds : per replicate, the ``SeedSequence`` its response was drawn with.
    lost : the replicates lost with a worker process that died (``n_jobs > 1``;
        NaN rows like failed refits).

    The results objects :meth:`replicate` builds are kept (one per replicate, built
    on first use), so :meth:`apply` with several statistics builds each once; they
    share the original model's design and hold their own response, estimates and
    whatever their statistics cached (``clear_cache()`` lets them go).
    """

    estimates: pd.Series
    replicates: pd.DataFrame
    llf: np.ndarray
    converged: np.ndarray
    seed: object
    seconds: float
    results: object = field(repr=False, default=None)
    fits: list = field(repr=False, default=None)
    seeds: list = field(repr=False, default=None)
    lost: list = field(repr=False, default_factory=list)
    _replicates: dict = field(repr=False, default_factory=dict, init=False)

    @property
    def n(self) -> int:
        return len(self.replicates)

    @property
    def n_failed(self) -> int:
        return int(self.replicates.isna().any(axis=1).sum())

    def conf_int(self, level=0.95) -> pd.DataFrame:
        """Percentile intervals (quantiles of the successful replicates)."""
        a = (1 - level) / 2
        ok = self.replicates.dropna()
        lo, hi = ok.quantile(a), ok.quantile(1 - a)
        out = pd.DataFrame({"estimate": self.estimates, "lower": lo, "upper": hi})
        out["interval"] = "bootstrap percentile"
        out.attrs.update(level=level, n=self.n, n_failed=self.n_failed)
        return out

    def summary(self) -> pd.DataFrame:
        """Estimate, bootstrap mean, bias (mean - estimate) and SD per parameter."""
        ok = self.replicates.dropna()
        return pd.DataFrame({"estimate": self.estimates, "mean": ok.mean(),
                             "bias": ok.mean() - self.estimates, "std": ok.std(ddof=1)})

    def response(self, r) -> np.ndarray:
        """The simulated response of replicate ``r`` (drawn again from its seed)."""
        return _draw(_spec(self.results), np.random.default_rng(self.seeds[r]))

    def replicate(self, r):
        """Replicate ``r`` as a results object of its refit (``ValueError`` if that
        refit failed): its model is a copy of the original model whose response is
        :meth:`response`, so every statistic -- ``llf``, ``params``, ``bse``,
        ``predict``, ``random_effects``, ``summary()`` -- is the refit's. Made by the
        original results' ``rebuild(model, fit)``, so it is of the same class."""
        if self.fits[r] is None:
            what = "was lost with a worker process" if r in self.lost else "failed"
            raise ValueError(f"bootstrap refit {r} {what}; it has no results")
        if r not in self._replicates:
            model = _model_with_response(self.results.model, self.response(r))
            self._replicates[r] = self.results.rebuild(model, self.fits[r])
        return self._replicates[r]

    def clear_cache(self):
        """Forget the replicates' results objects (:meth:`replicate` builds them again)."""
        self._replicates.clear()

    def apply(self, statistic):
        """``statistic(replicate)`` for every replicate (:meth:`replicate`: a results
        object of the refit), as lme4's ``bootMer(fit, FUN)``; NaN for failed refits.

        Returns a Series when the statistic is a number, a DataFrame (one row per
        replicate) when it is a vector or a Series (e.g. ``lambda r: r.params``).
        """
        values = []
        for r in range(self.n):
            if self.fits[r] is None:
                values.append(np.nan)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values.append(statistic(self.replicate(r)))
        name = getattr(statistic, "__name__", "statistic")
        if all(np.ndim(v) == 0 for v in values):
            return pd.Series(np.asarray(values, dtype=float), name=name)
        template = next(v for v in values if np.ndim(v) > 0)
        columns = template.index if isinstance(template, pd.Series) else None
        width = np.size(template)
        rows = [np.full(width, np.nan) if np.ndim(v) == 0 else np.asarray(v, dtype=float)
                for v in values]
        return pd.DataFrame(rows, columns=columns)

    def replicate_params(self) -> pd.DataFrame:
        """The replicates in the layout of ``results.params``: fixed effects, vech(Sigma_k)
        per term (variances and covariances, Sigma_k = diag(s) R diag(s) from the
        replicate's SDs and correlations)[, the zero part][, the dispersion], one row per
        replicate (NaN rows for failed refits)."""
        model = self.results.model
        p = model.k_fe
        layout = _layout(model)
        # the zero part and a GLMM's dispersion as they are (a Gaussian's sigma is not in
        # params)
        k = p + layout.dim + self.results.outcome.zi.size + int(model.fam.estimates_dispersion)
        rest = slice(p + layout.dim, k)
        rows = []
        for v in self.replicates.to_numpy(dtype=float):
            Sigmas = layout.Sigmas_from_natural(v[p:p + layout.dim])
            rows.append(np.concatenate([v[:p]] + [S[np.tril_indices(S.shape[0])]
                                                  for S in Sigmas] + [v[rest]]))
        out = pd.DataFrame(rows, columns=list(model.data.param_names))
        out[self.replicates.isna().all(axis=1).to_numpy()] = np.nan     # failed refits
        return out

    def __repr__(self) -> str:
        return (f"BootstrapResult(n={self.n}, failed={self.n_failed}, seed={self.seed!r}, "
                f"{self.seconds:.1f} s)")


def _shallow_copy(obj):
    """A new object of obj's class sharing its attributes. ``copy.copy`` goes through
    pickling's ``__getstate__``/``__setstate__``, and statsmodels' data object
    re-parses the model's formula in ``__setstate__`` (~8 ms a copy, most of the time
    of a bootstrap's ``apply`` with a cheap statistic)."""
    clone = object.__new__(type(obj))
    clone.__dict__.update(obj.__dict__)
    return clone


def _model_with_response(model, y):
    """A shallow copy of ``model`` whose response is ``y`` (same design, groups,
    offsets and trials; the formula is not parsed again)."""
    clone = _shallow_copy(model)
    clone.__dict__.pop("endog_li", None)          # per-group lists of the old response
    clone.__dict__.pop("problem", None)           # the core's arrays, with the old response
    clone.endog = np.asarray(y, dtype=float)
    clone.data = _shallow_copy(model.data)
    clone.data.endog = clone.endog
    return clone


def _layout(model) -> NaturalLayout:
    """The natural parameters of the model's terms (identity layout)."""
    return NaturalLayout([t.pattern for t in model.re_terms])


def natural_estimates(results) -> pd.Series:
    """The fit's natural parameters, labelled as the replicates' columns: fixed effects,
    SDs and correlations per term (:func:`~mlglm.design.mixedlm_view.natural_label`), the
    zero-part coefficients (``zi_<name>``), then ``sigma`` (Gaussian) or the dispersion a
    GLMM estimates (``theta``, ``scale``, ``phi``)."""
    model = results.model
    layout = _layout(model)
    names = [str(n) for n in model.exog_names] + [natural_label(model.re_terms, e)
                                                  for e in layout.entries]
    values = [np.asarray(results.fe_params, float), layout.natural(results.outcome.Sigmas)]
    if results.outcome.zi.size:             # the zero part (zero-inflated, hurdle)
        names += [str(n) for n in results.zi_params.index]
        values.append(np.asarray(results.outcome.zi, float))
    if model.fam.is_gaussian:
        names.append("sigma")
        values.append([np.sqrt(results.scale)])
    elif model.fam.estimates_dispersion:
        names.append(model.fam.dispersion_name)
        values.append([results.dispersion])
    return pd.Series(np.concatenate(values), index=names)


def _spec(results):
    """Everything a worker needs to simulate and refit (plain arrays and the core's
    problem; picklable), with what is the same for every replicate computed once: the
    fixed part of eta, the factors L_k of Sigma_k (zero columns where singular) and
    the start of every refit (the fit's theta for the LMM, its x = (beta, theta[, t])
    for a GLMM)."""
    model, fit = results.model, results.outcome
    terms = model.re_terms
    X = np.asarray(model.exog, float)
    offset = np.asarray(model.offset, float)
    start = (np.asarray(fit.theta, float) if model.fam.is_gaussian
             else model.theta_from_params(np.asarray(results.params, float)))
    a = None
    if model.fam.zero_part is not None:     # zero-inflated, hurdle: the zero part's predictor
        a = np.asarray(model.exog_zi, float) @ np.asarray(fit.zi, float)
    return dict(problem=model.problem, fam=model.fam, terms=terms, a=a,
                m=np.asarray(model.n_trials, float),
                eta_fixed=offset + X @ np.asarray(fit.beta, float),
                Ls=term_factors(terms, fit.Sigmas), dispersion=fit_dispersion(results),
                var=model.var_weights, method=results.method, nagq=results.nagq or 1,
                start=start, layout=_layout(model))


def _draw(spec, rng):
    """One response vector from the fitted model with new random effects for every term."""
    bs = draw_random_effects(spec["terms"], spec["Ls"], rng)
    eta = spec["eta_fixed"] + random_part(spec["terms"], bs)
    if spec["fam"].auxiliary:           # zero-inflated, hurdle, beta: with the zero part
        return spec["fam"].draw_rows(eta, spec["a"], rng, spec["dispersion"])
    return draw_response(spec["fam"], eta, rng, spec["m"], spec["dispersion"], spec["var"])


def _refit(spec, y):
    """(natural parameters, llf, converged, CoreFit) of the model refitted to y."""
    problem = spec["problem"].with_response(y)
    if problem.gaussian:
        f = problem.fit_lmm(reml=spec["method"] == "reml", theta0=spec["start"])
        extra = [np.sqrt(f.dispersion)]
    else:
        f = fit_glmm(problem.objective(spec["nagq"]), x0=spec["start"])  # with the polish
        extra = [] if f.log_dispersion is None else [np.exp(f.log_dispersion)]
    vec = np.concatenate([f.beta, spec["layout"].natural(f.Sigmas), f.zi, extra])
    return vec, float(f.llf), f.converged, f


def _run_chunk(spec, items):
    """Worker: [(r, SeedSequence)] -> [(r, vector | None, llf, converged, state | None)]."""
    out = []
    for r, ss in items:
        rng = np.random.default_rng(ss)
        y = _draw(spec, rng)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vec, llf, conv, state = _refit(spec, y)
            out.append((r, vec, llf, conv, state))
        except Exception:  # noqa: BLE001 - a failed refit is a recorded outcome
            out.append((r, None, np.nan, False, None))
    return out


def _run_pool(spec, units, n_workers, collect) -> list:
    """Run ``units`` (lists of (r, seed) items) in a fresh pool of ``n_workers``
    processes, handing each finished unit's output to ``collect``; returns the units
    lost when a worker process died (``BrokenProcessPool``), in submission order."""
    with ProcessPoolExecutor(max_workers=n_workers) as ex:
        futures = [ex.submit(_run_chunk, spec, u) for u in units]
        for fut in as_completed(futures):
            try:
                out = fut.result()
            except BrokenProcessPool:
                continue
            collect(out)
    return [u for u, f in zip(units, futures) if f.exception() is not None]


def _run_parallel(spec, items, n_jobs, collect):
    """Every replicate on ``n_jobs`` worker processes, surviving workers that die.

    When a worker process dies (killed, out of memory, a crash in compiled code) the
    pool breaks and every unfinished unit with it; finished ones are kept. A pool
    hands units out in submission order and holds at most 2 n_jobs + 1 of them at
    once (one running per worker, n_jobs + 1 queued), so of the lost units only the
    first 2 n_jobs + 1 can hold the replicate that killed it: those are run again
    one at a time in a one-process pool, where the unit that is lost first is the
    killer (it becomes a NaN row, as a failed refit), and the other lost units in a
    new pool of ``n_jobs``. Returns (the replicates lost, the number run again).
    """
    size = max(1, len(items) // (4 * n_jobs))
    parallel = [items[i:i + size] for i in range(0, len(items), size)]
    isolated, lost, rerun = [], [], set()
    while parallel or isolated:
        if parallel:
            broken = _run_pool(spec, parallel, n_jobs, collect)
            suspects = broken[:2 * n_jobs + 1]
            isolated += [[item] for unit in suspects for item in unit]
            parallel = broken[len(suspects):]
        else:
            broken = _run_pool(spec, isolated, 1, collect)
            if broken:
                lost.append(broken[0][0][0])
            isolated = broken[1:]
        rerun.update(r for unit in broken for r, _ in unit)
    return sorted(lost), len(rerun - set(lost))


class _Progress:
    """Progress on stderr: always if True, never if False, after 2 s if None."""

    def __init__(self, n, progress):
        self.n, self.mode, self.t0, self.last = n, progress, time.perf_counter(), 0.0
        self.shown = False

    def update(self, done):
        if self.mode is False:
            return
        now = time.perf_counter() - self.t0
        if self.mode is None and now < 2.0:
            return
        if done < self.n and now - self.last < 1.0 and self.shown:
            return
        self.last, self.shown = now, True
        eta = now / max(done, 1) * (self.n - done)
        sys.stderr.write(f"\rbootstrap {done}/{self.n}  {now:.1f} s elapsed, ~{eta:.0f} s left")
        if done == self.n:
            sys.stderr.write("\n")
        sys.stderr.flush()


def bootstrap(results, n=200, seed=None, progress=None, n_jobs=1) -> BootstrapResult:
    """Parametric bootstrap (see the module notes).

    Parameters
    ----------
    results : MixedGLMResults.
    n : number of replicates.
    seed : anything ``np.random.SeedSequence`` takes; the same seed gives the
        same replicates for any ``n_jobs``.
    progress : True (always), False (never) or None (default: on stderr once a
        run has taken 2 s).
    n_jobs : worker processes (-1: one per CPU).
    """
    n = checked_count(n, "n (the number of bootstrap replicates)")
    if not (is_integer(n_jobs) and (n_jobs >= 1 or n_jobs == -1)):
        raise MixedGLMInputError(f"n_jobs must be a positive integer (worker processes) or "
                                 f"-1 (one per CPU), got {n_jobs!r}")
    t0 = time.perf_counter()
    spec = _spec(results)
    ss = np.random.SeedSequence(seed)
    items = list(enumerate(ss.spawn(n)))
    estimates = natural_estimates(results)
    rows = np.full((n, estimates.size), np.nan)
    llf = np.full(n, np.nan)
    conv = np.zeros(n, dtype=bool)
    fits = [None] * n
    bar = _Progress(n, progress)
    done = 0

    def collect(chunk_out):
        nonlocal done
        for r, vec, ll, c, state in chunk_out:
            if vec is not None:
                rows[r], llf[r], conv[r], fits[r] = vec, ll, c, state
            done += 1
        bar.update(done)

    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    lost, n_rerun = [], 0
    if n_jobs <= 1:
        for item in items:
            collect(_run_chunk(spec, [item]))
    else:
        lost, n_rerun = _run_parallel(spec, items, n_jobs, collect)
        done += len(lost)
        bar.update(done)
    reps = pd.DataFrame(rows, columns=estimates.index)
    out = BootstrapResult(estimates=estimates, replicates=reps, llf=llf, converged=conv,
                          seed=seed, seconds=time.perf_counter() - t0, results=results,
                          fits=fits, seeds=[s for _, s in items], lost=lost)
    if lost or n_rerun:
        warnings.warn(
            f"a bootstrap worker process died (BrokenProcessPool: killed, out of memory or "
            f"crashed); {n_rerun} replicates it took down were run again in a new pool"
            + (f", and {len(lost)} of {n} (replicate{'s' * (len(lost) > 1)} "
               f"{', '.join(map(str, lost))}) killed their worker again: NaN rows, as for "
               "failed refits; intervals use the others" if lost else ""),
            RuntimeWarning, stacklevel=2)
    if out.n_failed - len(lost):
        warnings.warn(f"{out.n_failed - len(lost)} of {n} bootstrap refits failed (NaN rows); "
                      "intervals use the others", RuntimeWarning, stacklevel=2)
    n_nc = int(np.sum(~conv & ~reps.isna().any(axis=1).to_numpy()))
    if n_nc:
        warnings.warn(f"{n_nc} of {n} bootstrap refits did not meet the convergence "
                      "criteria (kept; see .converged)", RuntimeWarning, stacklevel=2)
    return out
