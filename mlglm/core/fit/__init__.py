"""The optimiser's seam (Objective), the fit driver and the quadrature check."""
