"""Numerical utilities of the core: Gauss-Hermite rules, stacks of small matrices, memory
estimates."""
