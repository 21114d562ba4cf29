"""Factors nested in one another: tree elimination (Laplace, AGHQ)."""
