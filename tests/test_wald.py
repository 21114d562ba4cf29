"""Wald tests of linear hypotheses on every family (issue 10, item 2).

On Gaussian fits ``t_test`` gave SE/z/p = NaN and ``wald_test``, ``f_test`` and
``wald_test_terms`` raised "asymptotically non-normal": the hypothesis was padded with
zeros over the variance parameters, whose covariance (not reported for Gaussian
fits) is NaN, and 0 x NaN = NaN. Every test must work on every family and agree with
the explicit computation from the fixed-effects block of ``cov_params()``:
z = (r'b - q) / sqrt(r'Vr), chi2 = (Rb - q)'(R V R')^{-1}(Rb - q), F = chi2 / J.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from test_results_api import FAMILIES, FIT_KW, build_model, make_data

#: the same floating-point computation done two ways (statsmodels' and explicit)
SAME = 1e-10


@pytest.fixture(scope="module")
def fits():
    df = make_data()
    return {fam: build_model(df, fam).fit(**FIT_KW.get(fam, {})) for fam in FAMILIES}


def _fixed(res):
    names = list(res.model.exog_names)
    p = len(names)
    return names, np.asarray(res.fe_params), np.asarray(res.cov_params())[:p, :p]


@pytest.mark.parametrize("family", FAMILIES)
def test_t_test(fits, family):
    res = fits[family]
    names, b, V = _fixed(res)
    r = np.zeros(len(names))
    r[names.index("x1")], r[names.index("x2")] = 1.0, 2.0
    want_z = (r @ b - 0.1) / np.sqrt(r @ V @ r)
    for hyp in ("x1 + 2 * x2 = 0.1", (r, 0.1)):
        tt = res.t_test(hyp)
        assert float(np.squeeze(tt.sd)) == pytest.approx(np.sqrt(r @ V @ r), rel=SAME)
        assert float(np.squeeze(tt.tvalue)) == pytest.approx(want_z, rel=SAME)
        assert float(np.squeeze(tt.pvalue)) == pytest.approx(2 * stats.norm.sf(abs(want_z)),
                                                             rel=1e-8)
    # several rows at once, as an array over the fixed effects
    R = np.eye(len(names))[[names.index("x1"), names.index("x2")]]
    tt = res.t_test(R)
    np.testing.assert_allclose(np.ravel(tt.tvalue), (R @ b) / np.sqrt(np.diag(R @ V @ R.T)),
                               rtol=SAME)


@pytest.mark.parametrize("family", FAMILIES)
def test_wald_test_and_f_test(fits, family):
    res = fits[family]
    names, b, V = _fixed(res)
    R = np.zeros((2, len(names)))
    R[0, names.index("x1")] = 1.0
    R[1, names.index("c[T.b]")], R[1, names.index("c[T.c]")] = 1.0, -1.0
    chi2 = float(R @ b @ np.linalg.solve(R @ V @ R.T, R @ b))
    wt = res.wald_test("x1 = 0, c[T.b] = c[T.c]", scalar=True)
    assert float(wt.statistic) == pytest.approx(chi2, rel=SAME)
    assert float(wt.pvalue) == pytest.approx(stats.chi2.sf(chi2, 2), rel=1e-8)
    ft = res.f_test("x1 = 0, c[T.b] = c[T.c]")
    assert float(ft.fvalue) == pytest.approx(chi2 / 2, rel=SAME)
    assert ft.df_num == 2 and ft.df_denom == res.df_resid
    assert float(ft.pvalue) == pytest.approx(stats.f.sf(chi2 / 2, 2, res.df_resid), rel=1e-8)


@pytest.mark.parametrize("family", FAMILIES)
def test_wald_test_terms(fits, family):
    res = fits[family]
    names, b, V = _fixed(res)
    table = res.wald_test_terms(scalar=True).table
    assert list(table.index) == ["Intercept", "c", "x1", "x2"]
    idx = [names.index("c[T.b]"), names.index("c[T.c]")]
    chi2 = float(b[idx] @ np.linalg.solve(V[np.ix_(idx, idx)], b[idx]))
    assert table.loc["c", "statistic"] == pytest.approx(chi2, rel=SAME)
    assert table.loc["c", "df_constraint"] == 2
    assert table.loc["c", "pvalue"] == pytest.approx(stats.chi2.sf(chi2, 2), rel=1e-8)
    k = names.index("x2")
    assert table.loc["x2", "statistic"] == pytest.approx(b[k] ** 2 / V[k, k], rel=SAME)


def test_hypothesis_on_a_variance_without_wald_covariance_is_refused(fits):
    res = fits["gaussian"]
    k = len(res.params)
    r = np.zeros(k)
    r[-1] = 1.0                                   # "x1 Var": no Wald SE for Gaussian fits
    with pytest.raises(ValueError, match="x1 Var.*profile"):
        res.t_test(r)
    # binomial fits do have one (delta method): the same hypothesis is a plain z test
    bin_res = fits["binomial-logit"]
    tt = bin_res.t_test(r)
    assert float(np.squeeze(tt.sd)) == pytest.approx(float(bin_res.bse.iloc[-1]), rel=SAME)
