"""Parametric bootstrap of a fit: simulate from it, refit, collect the estimates.

Each replicate r draws new random effects b_j ~ N(0, Sigma-hat) for every
group and a response from the fitted family at
eta = offset + X beta-hat + Z b and the fitted dispersion (negative binomial
theta, Gamma scale; Gaussian: plus N(0, sigma-hat^2 / v) noise), then
refits the same model by the same method, starting from the original
estimates (lme4's ``bootMer(use.u = FALSE, type = "parametric")``). What is
kept per replicate is the natural parameter vector -- fixed effects, SDs,
correlations (and sigma, or the dispersion) -- with its log-likelihood and convergence flag, and
the refit itself (the frozen state the results are built from: O(groups x q^2)
numbers), so that :meth:`BootstrapResult.replicate` gives a real results object
of the refit -- a copy of the model holding the replicate's response, with the
refit's estimates, standard errors, random effects and log-likelihood -- and
:meth:`BootstrapResult.apply` evaluates any statistic on it (lme4's
``bootMer(fit, FUN)``) without fitting again. The replicate's response is drawn
again from its seed when needed (the draw is deterministic).

Several grouping factors: new random effects for every factor, the refit by
the same method (:mod:`mlglm.bootstrap_multi`).

Reproducibility: replicate r uses its own generator,
``np.random.default_rng(SeedSequence(seed).spawn(n)[r])``, so the replicates
are the same for a seed whatever ``n_jobs`` is and in whichever order the
worker processes finish. Refits go straight to the numerical core (no
formula or statsmodels model per replicate). Failed refits are kept as NaN
rows, counted, and warned about -- never dropped silently.
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .core.covariance import theta_from_Sigma, theta_to_Lambda
from .core.natural import Sigma_from_natural, natural_vector
from .core.optimize import fit_glmm
from .data_checks import MixedGLMInputError, checked_count, is_integer
from .marginal import draw_response, fit_dispersion
from .profile import natural_values

__all__ = ["BootstrapResult", "bootstrap"]


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
    fits : per replicate, the refit's frozen state (None for failed refits).
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
        ``predict``, ``random_effects``, ``summary()`` -- is the refit's."""
        from .results import build_results
        if self.fits[r] is None:
            what = "was lost with a worker process" if r in self.lost else "failed"
            raise ValueError(f"bootstrap refit {r} {what}; it has no results")
        if r in self._replicates:
            return self._replicates[r]
        res = self.results
        if getattr(res.model, "multi", False):
            from .bootstrap_multi import replicate_results
            out = replicate_results(res, self.response(r), self.fits[r])
        else:
            model = _model_with_response(res.model, self.response(r))
            out = build_results(model, self.fits[r])
        self._replicates[r] = out
        return out

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
        """The replicates in the layout of ``results.params``: fixed effects and
        vech(Sigma) (variances and covariances; per factor with several)[, the
        dispersion], one row per replicate."""
        model = self.results.model
        if getattr(model, "multi", False):
            from .bootstrap_multi import multi_replicate_params
            return multi_replicate_params(self)
        p, q = model.k_fe, model.q
        n_rho = 0 if (model.diagonal or q == 1) else q * (q - 1) // 2
        tril = np.tril_indices(q)
        k = p + q + n_rho
        disp = model.fam.estimates_dispersion
        rows = [np.concatenate([v[:p], Sigma_from_natural(v[p:p + q], v[p + q:k], q)[tril]]
                               + ([v[k:k + 1]] if disp else []))
                for v in self.replicates.to_numpy(dtype=float)]
        return pd.DataFrame(rows, columns=list(model.data.param_names))

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


def _spec(results):
    """Everything a worker needs to simulate and refit (plain arrays; picklable),
    with what is the same for every replicate computed once: the fixed part of
    eta, the factor L of Sigma (zero columns for a singular Sigma) and the start
    x0 = (beta, theta) of every refit."""
    model = results.model
    if getattr(model, "multi", False):
        from .bootstrap_multi import multi_spec
        return multi_spec(results)
    X = np.asarray(model.exog, float)
    beta = np.asarray(results.fe_params, float)
    offset = np.asarray(model.offset, float)
    theta = theta_from_Sigma(np.asarray(results.cov_re, float), model.diagonal)
    x0 = np.concatenate([beta, theta] + (
        [[np.log(results.dispersion)]] if model.fam.estimates_dispersion else []))
    return dict(problem=model.problem, fam=model.fam, X=X,
                Z=np.asarray(model.exog_re, float), codes=np.asarray(model.group_codes),
                m=np.asarray(model.n_trials, float), offset=offset, n_groups=model.n_groups,
                eta_fixed=offset + X @ beta, x0=x0,
                L=theta_to_Lambda(theta, model.q, model.diagonal),
                dispersion=fit_dispersion(results), freq=model.freq_weights,
                var=model.var_weights, method=results.method, nagq=results.nagq or 1,
                diagonal=model.diagonal)


def _draw(spec, rng):
    """One response vector from the fitted model with new random effects."""
    if spec.get("multi"):
        from .bootstrap_multi import multi_draw
        return multi_draw(spec, rng)
    b = rng.standard_normal((spec["n_groups"], spec["L"].shape[0])) @ spec["L"].T
    eta = spec["eta_fixed"] + np.einsum("nq,nq->n", spec["Z"], b[spec["codes"]])
    return draw_response(spec["fam"], eta, rng, spec["m"], spec["dispersion"], spec["var"])


def _refit(spec, y):
    """(natural parameters, llf, converged, fit state) of the model refitted to y."""
    if spec.get("multi"):
        from .bootstrap_multi import multi_refit
        return multi_refit(spec, y)
    correlated = spec["Z"].shape[1] > 1 and not spec["diagonal"]
    problem = spec["problem"].with_response(y)
    if problem.gaussian:
        f = problem.fit_lmm(reml=spec["method"] == "reml")
        vec = natural_vector(f.beta, f.Sigmas[0], correlated, np.sqrt(f.dispersion))
        return vec, float(f.llf), bool(f.converged), f
    obj = problem.objective(spec["nagq"])
    st = fit_glmm(obj, x0=spec["x0"])       # with the Newton polish, as results.fit()
    vec = natural_vector(st.beta, st.Sigmas[0], correlated)
    if st.log_dispersion is not None:
        vec = np.append(vec, np.exp(st.log_dispersion))
    return vec, float(st.llf), bool(st.record.converged), st


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
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
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
    estimates = natural_values(results)
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
        import os
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
