"""MixedLM's constructor state, set up without its per-row and per-group loops.

``MixedGLM`` is a statsmodels ``MixedLM`` (``from_formula``, names, pickling,
results machinery), but ``MixedLM.__init__`` builds ``row_indices`` with a
Python loop over the rows and then per-group lists (``endog_li``, ``exog_li``,
``exog_re_li``, ``exog_re2_li``, ``_aex_r``, ``_aex_r2``) with loops over the
groups: about 0.1 s at 10^5 rows in 10^4 groups, and half of a 13 ms
random-intercept LMM fit. mlglm's engine needs none of them; it works from one
integer code per row. :class:`MixedLMSetup` (a mixin placed before ``MixedLM``)
sets up the same attributes as ``MixedLM.__init__``: the statsmodels data
handling runs as there (``LikelihoodModel.__init__``), the group labels and codes
come from one ``pd.factorize`` (sorted labels, as MixedLM's
``sorted(set(groups))``), and the per-group lists are built only when some
statsmodels code path reads them, equal to MixedLM's
(``tests/test_constructor.py`` compares every one).
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

from .data_checks import MixedGLMInputError

__all__ = ["MixedLMSetup"]


class MixedLMSetup:
    """Mixin for a ``MixedLM`` subclass: :meth:`_init_mixedlm` replaces
    ``MixedLM.__init__`` (no variance components), lazy per-group lists."""

    def _init_mixedlm(self, endog, exog, groups, exog_re, use_sqrt=True, **kwargs):
        """What ``MixedLM.__init__`` sets up (see the module docstring), plus
        ``group_codes``: each row's position among the sorted ``group_labels``."""
        for key in kwargs:
            if key not in ("missing_idx", "model_spec", "formula"):
                raise ValueError(f"argument {key} not permitted for MixedLM initialization")
        self.use_sqrt = use_sqrt
        self.reml = True
        self.fe_pen = None
        self.re_pen = None
        self.k_vc = 0
        self.exog_vc = VCSpec([], [], [])
        if isinstance(exog, np.ndarray) and exog.ndim == 1:
            exog = exog[:, None]
        if isinstance(exog_re, np.ndarray) and exog_re.ndim == 1:
            exog_re = exog_re[:, None]
        super(MixedLM, self).__init__(endog, exog, groups=groups, exog_re=exog_re,
                                      missing="none", **kwargs)
        self._init_keys.extend(["use_sqrt", "exog_vc"])
        self.k_fe = exog.shape[1]
        if exog_re is None:
            self.k_re = self.k_re2 = 1
            self.exog_re = np.ones((len(self.endog), 1), dtype=np.float64)
            self.data.exog_re = self.exog_re
            names = ["Group Var"]
            self.data.param_names = self.exog_names + names
            self.data.exog_re_names = names
            self.data.exog_re_names_full = names
        else:
            self.data.exog_re = exog_re
            self.exog_re = np.asarray(exog_re)
            if self.exog_re.ndim == 1:
                self.exog_re = self.exog_re[:, None]
            self.k_re = self.exog_re.shape[1]
            self.k_re2 = self.k_re * (self.k_re + 1) // 2
        if not self.data._param_names:
            param_names, exog_re_names, exog_re_names_full = self._make_param_names(exog_re)
            self.data.param_names = param_names
            self.data.exog_re_names = exog_re_names
            self.data.exog_re_names_full = exog_re_names_full
        self.k_params = self.k_fe + self.k_re2
        self.group_labels, self.group_codes = _factorize_groups(groups)
        self.n_groups = len(self.group_labels)
        self.nobs = len(self.endog)
        self.n_totobs = self.nobs

    # MixedLM's per-group lists, built on first use (statsmodels' own methods
    # such as MixedLM.loglike read them; mlglm's engine does not).
    @cached_property
    def row_indices(self):
        """{label: list of row numbers}, as MixedLM builds it."""
        order, starts, ends = self._group_split
        order = order.tolist()
        return {g: order[a:b] for g, a, b in zip(self.group_labels, starts, ends)}

    @cached_property
    def endog_li(self):
        return self.group_list(self.endog)

    @cached_property
    def exog_li(self):
        return self.group_list(self.exog)

    @cached_property
    def exog_re_li(self):
        return self.group_list(self.exog_re)

    @cached_property
    def exog_re2_li(self):
        return [np.dot(x.T, x) for x in self.exog_re_li]

    @cached_property
    def _aex_r(self):
        return list(self.exog_re_li)  # no variance components: _augment_exog is exog_re_li

    @cached_property
    def _aex_r2(self):
        return [np.dot(a.T, a) for a in self._aex_r]

    @cached_property
    def _lin(self):
        return self._reparam()[0]

    @cached_property
    def _quad(self):
        return self._reparam()[1]

    @cached_property
    def _group_split(self):
        """(row order sorting the rows by group, segment starts, segment ends)."""
        codes = self.group_codes
        order = np.argsort(codes, kind="stable")
        ends = np.cumsum(np.bincount(codes, minlength=self.n_groups))
        starts = np.concatenate([[0], ends[:-1]])
        return order, starts.tolist(), ends.tolist()

    def group_list(self, array):
        """Per-group row blocks, as MixedLM's but from one stable argsort and
        plain slices instead of a Python loop of fancy indexing."""
        if array is None:
            return None
        order, starts, ends = self._group_split
        sorted_rows = np.asarray(array)[order]
        return [sorted_rows[a:b] for a, b in zip(starts, ends)]


def _factorize_groups(groups):
    """Sorted distinct labels (a list, as MixedLM's ``sorted(set(groups))``) and
    each row's position among them (intp codes 0..G-1), by one hash pass."""
    g = np.asarray(groups)
    if g.ndim == 2 and g.shape[1] == 1:
        g = g[:, 0]
    try:
        codes, labels = pd.factorize(g, sort=True)
    except TypeError:  # labels of mixed types that pandas will not sort together
        labels = sorted(set(g.tolist()))
        codes = pd.Index(labels).get_indexer(g)
    if np.any(codes < 0):
        raise MixedGLMInputError("groups contain missing values")
    return list(labels), np.asarray(codes, dtype=np.intp)
