"""The front doors: the statsmodels model classes, lme4's glmer/lmer and helpers."""
