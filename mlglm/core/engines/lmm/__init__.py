"""The exact Gaussian LMM: per-group statistics (one term), the blocked factorisation (several),
sums over blocks of levels, small-sample df."""
