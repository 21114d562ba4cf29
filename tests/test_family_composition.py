"""One family representation (issue 22 item 6): a Distribution composed with a Link.

* ``mlglm.core.spec.family``: the links' derivatives against central differences, the
  composition choosing the row kernel, pickling to the registered objects;
* ``mlglm.design.data_checks.resolve_family``: names and statsmodels objects read once, and
  back (``statsmodels_family``);
* the no-pooling GLMs of a negative binomial fit take the fitted theta
  (``statsmodels_family(fam, theta)``): they failed before ("the first guess on the
  deviance function returned a nan", alpha = NaN);
* a source guard: no module outside ``core/family.py`` tests a family by its class name
  or compares family or link names.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

import mlglm
from mlglm.core.spec.family import (DISTRIBUTIONS, GAUSSIAN, KERNEL_PAIRS, LINKS, LOG,
                               NEGATIVE_BINOMIAL, POISSON, Family)
from mlglm.design.data_checks import MixedGLMInputError, resolve_family
from mlglm.design.sm_families import statsmodels_distribution, statsmodels_family
from mlglm.api.pooling import compare_pooling

PAIRS = KERNEL_PAIRS + (("gaussian", "identity"),)


def _eta(link):
    return np.linspace(0.2, 3.0, 41) if link == "inverse" else np.linspace(-6.0, 6.0, 41)


@pytest.mark.parametrize("name", list(LINKS))
def test_link_derivative_and_inverse(name):
    """d mu / d eta = central differences of g^{-1} (h = 1e-5: truncation ~1e-10
    relative, rounding ~eps mu / h ~ 2e-11 absolute), and g(g^{-1}(eta)) = eta where
    1 - mu keeps its digits (|eta| <= 2; cloglog at eta = 3 has 1 - mu = 2e-9)."""
    link, eta, h = LINKS[name], _eta(name), 1e-5
    fd = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), fd, rtol=1e-7, atol=1e-10)
    eta = eta[np.abs(eta) <= 2.0]
    np.testing.assert_allclose(link.link(link.inverse(eta)), eta, rtol=1e-10, atol=1e-10)


def test_only_the_inverse_link_restricts_the_linear_predictor():
    """Link.restricted marks a g^{-1} that gives a valid (positive) mean on part of the
    line only: 1 / eta needs eta > 0; the other links map every eta to a valid mean. The
    fit's advice after a log-likelihood of -inf (use the log link) asks this flag."""
    assert [link.name for link in LINKS.values() if link.restricted] == ["inverse"]
    for link in LINKS.values():
        if not link.restricted:
            mu = link.inverse(np.linspace(-30.0, 30.0, 61))
            assert np.all(np.isfinite(mu))


@pytest.mark.parametrize("dist, link", KERNEL_PAIRS)
def test_the_family_makes_its_kernel_from_the_composition(dist, link):
    """The kernel knows its distribution and link; its mean function is the link's and
    its constants the distribution's; a kernel with a dispersion is bound to t."""
    fam = Family(dist, link)
    fl = fam.kernel(0.3 if fam.has_dispersion else None)
    assert fl.distribution is fam.distribution and fl.link is fam.link
    eta = _eta(link)
    assert np.array_equal(fl.inverse_link(eta), fam.inverse_link(eta))
    y = np.array([1.0, 2.0, 3.0])
    assert np.array_equal(fl.log_const(y, 4.0), fam.distribution.log_const(y, 4.0))
    assert fl.has_dispersion == fam.has_dispersion
    if fl.has_dispersion:
        assert fl.log_dispersion == 0.3 and fl.at(0.5).log_dispersion == 0.5


def test_pairs_without_a_kernel_are_refused():
    with pytest.raises(ValueError, match="unsupported family/link poisson/identity"):
        Family("poisson", "identity")
    with pytest.raises(ValueError, match="not log-concave"):
        Family("gaussian", "log")
    with pytest.raises(ValueError, match="fitted exactly"):
        Family("gaussian").kernel()
    with pytest.raises(ValueError, match="negative binomial only"):
        Family("gamma", "log", dispersion=2.0)


def test_pickling_returns_the_registered_distribution_and_link():
    fam = pickle.loads(pickle.dumps(Family(NEGATIVE_BINOMIAL, LOG, dispersion=2.0)))
    assert fam.distribution is NEGATIVE_BINOMIAL and fam.link is LOG
    assert fam.fixed_dispersion == 2.0 and not fam.estimates_dispersion


@pytest.mark.parametrize("dist, link", PAIRS)
def test_names_and_statsmodels_objects_are_read_once_and_back(dist, link):
    """A name and the statsmodels object it makes give the same Family; the Family gives
    back a statsmodels object of the same classes."""
    sm_family, fam = resolve_family(f"{dist}(link={link})")
    assert (fam.distribution, fam.link) == (DISTRIBUTIONS[dist], LINKS[link])
    again = resolve_family(sm_family)[1]
    assert again.distribution is fam.distribution and again.link is fam.link
    assert statsmodels_distribution(sm_family) is fam.distribution
    back = statsmodels_family(fam)
    assert type(back) is type(sm_family) and type(back.link) is type(sm_family.link)
    assert resolve_family(fam)[1] is fam


def test_statsmodels_objects_outside_the_pairs():
    assert statsmodels_distribution(sm.families.Tweedie()) is None
    assert statsmodels_distribution(None) is None
    assert statsmodels_distribution(sm.families.Poisson(sm.families.links.Identity())) is POISSON
    with pytest.raises(MixedGLMInputError, match="Poisson with link Identity is not supported"):
        resolve_family(sm.families.Poisson(sm.families.links.Identity()))
    # a link class derived from Logit is another link, not the logit
    with pytest.raises(MixedGLMInputError, match="LogLog is not supported"):
        resolve_family(sm.families.Binomial(sm.families.links.LogLog()))
    assert resolve_family(None)[1].distribution is GAUSSIAN


def test_negative_binomial_pooling_holds_theta_at_the_estimate():
    """grouseticks TICKS ~ 1 by BROOD, NB2: the complete- and no-pooling GLMs are
    ``sm.GLM`` NB fits with alpha = 1 / theta-hat of the mixed model (before: alpha NaN,
    the complete-pooling fit failed). Their intercepts are then log(mean TICKS) overall
    and per brood (the NB2 likelihood equation of an intercept alone is sum(y - mu) = 0
    whatever alpha); the 22 broods whose counts are all 0 are listed as such."""
    g = mlglm.datasets.load_grouseticks()
    pc = compare_pooling("TICKS ~ 1", g, groups="BROOD", family="negative_binomial")
    assert pc.family_name == "negative_binomial" and pc.fam.is_count
    assert pc.complete.model.family.alpha == pytest.approx(1 / pc.mixed.dispersion, rel=1e-14)
    assert pc.complete.params[0] == pytest.approx(np.log(g["TICKS"].mean()), rel=1e-8)
    means = g.groupby(g["BROOD"].astype(str), observed=True)["TICKS"].mean()
    ok = pc.table.dropna(subset=["no_pooling"])
    np.testing.assert_allclose(ok["no_pooling"], np.log(means[ok["group"].astype(str)]),
                               rtol=1e-7, atol=1e-7)
    zero = set(means.index[means == 0])
    assert len(zero) == 22 and set(pc.failed["group"].astype(str)) == zero
    assert pc.failed["reason"].str.startswith("all counts are zero").all()


#: a family tested by its class name, or a family/link name compared, outside core/family.py
_FORBIDDEN = [
    re.compile(r"type\([^()]*(famil|link|fam)[^()]*\)\.__name__"),
    re.compile(r"\.(name|link|link_name|family_name)\s*(==|!=|\bin\b)\s*[(\[{]?\s*['\"]"),
    re.compile(r"(==|!=|\bin\b)\s*[(\[{]?\s*['\"](" + "|".join(
        list(DISTRIBUTIONS) + list(LINKS) + ["negativebinomial", "Binomial", "Poisson",
                                             "Gamma", "Gaussian", "NegativeBinomial"]) + r")['\"]"),
]


def test_no_family_name_tests_outside_the_family_module():
    """The statsmodels object is read once (data_checks.resolve_family, which shows its
    class name in a message), everything else asks model.fam."""
    root = Path(mlglm.__file__).parent
    hits = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "core/spec/family.py":
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if rel == "design/data_checks.py" and "_unsupported(" in code:
                continue
            if any(p.search(code) for p in _FORBIDDEN):
                hits.append(f"{rel}:{no}: {line.strip()}")
    assert not hits, "\n".join(hits)
