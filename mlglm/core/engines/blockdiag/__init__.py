"""One term: per-group q x q blocks (Laplace and AGHQ)."""
