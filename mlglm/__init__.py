"""mlglm: maximum-likelihood multilevel GLMs for statsmodels."""
