"""The results object and its views: summary, prediction, residuals, random effects, ICC,
pooling, plots."""
