"""mlglm: maximum-likelihood multilevel GLMs for statsmodels.

Binomial and Poisson mixed models with random intercepts and correlated
random slopes for one grouping factor, fitted by the Laplace approximation or
adaptive Gauss-Hermite quadrature (AGHQ, also for random slopes), and exact
linear mixed models, with statsmodels-style results.
"""
from . import datasets
from .data_checks import DataWarning, MixedGLMInputError
from .formula import FormulaError
from .lme4style import glmer, lmer
from .model import BinomialMixedGLM, MixedGLM, PoissonMixedGLM
from .results import MixedGLMResults

__version__ = "0.1.0"

__all__ = ["MixedGLM", "BinomialMixedGLM", "PoissonMixedGLM", "MixedGLMResults", "glmer", "lmer",
           "datasets", "FormulaError", "MixedGLMInputError", "DataWarning", "__version__"]
