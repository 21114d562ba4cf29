"""Bundled real data sets and a simulator for two-level GLMMs.

Real data (see ``SOURCES.md`` for provenance), prepared as the R reference
scripts prepare them:

- :func:`load_hsb` -- High School and Beyond maths achievement (lmer examples)
- :func:`load_contraception` -- Bangladesh contraception (binomial GLMM)
- :func:`load_cbpp` -- cattle pleuropneumonia (binomial with trials)
- :func:`load_grouseticks` -- ticks on grouse chicks (Poisson GLMM; broods, locations)
- several grouping factors: :func:`load_verbagg` (crossed, binomial),
  :func:`load_penicillin` (crossed), :func:`load_pastes` (nested),
  :func:`load_sleepstudy` (random slope), :func:`load_chem97` (three levels),
  :func:`load_insteval` (crossed, 73k rows)
- :func:`load_epil` -- seizure counts (overdispersed: the negative binomial GLMM)
- :func:`load_salamanders` -- salamander counts with 60% zeros (zero-inflated and hurdle GLMMs)

:func:`list_datasets` lists them, :func:`describe` prints a description.
:func:`simulate_glmm` draws data from a known two-level GLMM.
"""
from ._load import (describe, list_datasets, load, load_cbpp, load_chem97, load_contraception,
                    load_epil, load_grouseticks, load_hsb, load_insteval, load_pastes,
                    load_penicillin, load_salamanders, load_sleepstudy, load_verbagg)
from .simulate import SimulatedGLMM, simulate_glmm

__all__ = ["load_hsb", "load_contraception", "load_cbpp", "load_grouseticks", "load_verbagg",
           "load_penicillin", "load_pastes", "load_sleepstudy", "load_chem97", "load_insteval",
           "load_epil", "load_salamanders",
           "load", "describe", "list_datasets", "simulate_glmm", "SimulatedGLMM"]
