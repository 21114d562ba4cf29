"""What a model is, to the core: terms, covariance patterns, parameter layouts, the family, the
fit record, the core's exception."""
