"""Bundled real data sets and a simulator for two-level GLMMs.

Real data (see ``SOURCES.md`` for provenance), prepared as the R reference
scripts prepare them:

- :func:`load_hsb` -- High School and Beyond maths achievement (lmer examples)
- :func:`load_contraception` -- Bangladesh contraception (binomial GLMM)
- :func:`load_cbpp` -- cattle pleuropneumonia (binomial with trials)
- :func:`load_grouseticks` -- ticks on grouse chicks (Poisson GLMM)

:func:`list_datasets` lists them, :func:`describe` prints a description.
:func:`simulate_glmm` draws data from a known two-level GLMM.
"""
from ._load import (describe, list_datasets, load, load_cbpp, load_contraception,
                    load_grouseticks, load_hsb)
from .simulate import SimulatedGLMM, simulate_glmm

__all__ = ["load_hsb", "load_contraception", "load_cbpp", "load_grouseticks",
           "load", "describe", "list_datasets", "simulate_glmm", "SimulatedGLMM"]
