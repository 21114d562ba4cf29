"""Inference from a fit: Wald, profile, bootstrap, marginal means and simulation, comparisons,
quadrature diagnostics, small-sample tests."""
