"""mlglm: maximum-likelihood multilevel GLMs for statsmodels.

Binomial, Poisson, negative binomial and Gamma mixed models with random
intercepts and correlated random slopes, for one grouping factor or several
(nested or crossed), fitted by the Laplace approximation or adaptive
Gauss-Hermite quadrature (AGHQ, also for random slopes and nested factors), and
exact linear mixed models (profiled REML/ML), with statsmodels-style results,
lme4's front doors and accessors (``glmer``, ``lmer``, ``fixef``, ``ranef``,
``VarCorr``, ``anova``), an ICC helper, a pooling comparison, and fits of data
sharded across a Dask cluster.
"""
from . import datasets
from .api.lme4style import glmer, lmer
from .api.models import (BinomialMixedGLM, FitError, MixedGLM, PoissonMixedGLM,
                         SeparationWarning, SingularFitWarning)
from .api.pooling import compare_pooling
from .design.data_checks import DataWarning, MixedGLMInputError
from .design.fit_checks import CollinearityWarning, QuadratureWarning, StandardErrorWarning
from .design.formula import FormulaError
from .inference.compare import LRTest, anova, compare_lr_test
from .inference.diagnostics import QuadratureCheck, check_quadrature
from .results.icc import ICCResult, VarianceExplained, icc, variance_explained
from .results.plotting import caterpillar, effect_plot
from .results.pooling import PoolingComparison, compare_pooling_from_results
from .results.ranef import random_effects_frame
from .results.results import MixedGLMResults
# after .results.ranef: the name mlglm.ranef is lme4's function, not that module
from .results.lme4api import VarCorr, coef, fixef, isSingular, ranef, update  # noqa: E402
# The modules every fit path uses, loaded with the package rather than inside the first
# fit: a first fit then costs what later ones do (where no bytecode cache exists, loading
# them inside a fit added ~15 ms to a 20 ms LMM). Nothing here imports dask or matplotlib.
from .core.engines.crossed import objective as _crossed_objective  # noqa: F401,E402
from .core.engines.lmm import blocked as _lmm_blocked  # noqa: F401,E402
from .core.engines.nested import objective as _nested_objective  # noqa: F401,E402

__version__ = "0.1.0"

__all__ = ["MixedGLM", "BinomialMixedGLM", "PoissonMixedGLM", "MixedGLMResults", "glmer", "lmer",
           "icc", "ICCResult", "variance_explained", "VarianceExplained", "compare_pooling",
           "compare_pooling_from_results", "PoolingComparison", "random_effects_frame",
           "caterpillar", "effect_plot", "datasets", "FormulaError", "MixedGLMInputError",
           "DataWarning", "SingularFitWarning", "SeparationWarning", "FitError", "anova",
           "compare_lr_test", "LRTest", "check_quadrature", "QuadratureCheck", "fixef", "ranef",
           "VarCorr", "coef", "update", "isSingular", "QuadratureWarning",
           "CollinearityWarning", "StandardErrorWarning", "__version__"]
