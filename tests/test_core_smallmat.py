"""Closed-form 1x1 / 2x2 inverse, solve and log-det against numpy.linalg (q = 3 falls back)."""
import numpy as np
import pytest

from mlglm.core.numerics.smallmat import spd_inv, spd_logdet, spd_solve


@pytest.mark.parametrize("q", [1, 2, 3])
def test_small_spd_stack_matches_linalg(q):
    rng = np.random.default_rng(20261125 + q)
    B = rng.normal(size=(200, q, q)) * rng.uniform(0.01, 30, size=(200, 1, 1))
    H = B @ np.swapaxes(B, 1, 2) + np.eye(q)
    g = rng.normal(size=(200, q))
    np.testing.assert_allclose(spd_inv(H), np.linalg.inv(H), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(spd_solve(H, g), np.linalg.solve(H, g[..., None])[..., 0],
                               rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(spd_logdet(H), np.linalg.slogdet(H)[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_pair_stacks_match_full_matrices(q):
    """The (n_pairs, G) 'unique entries' helpers the mode iteration and the Laplace
    gradient use agree with the same operations on full (G, q, q) stacks."""
    from mlglm.core.numerics.smallmat import (congruence, full_to_pairs, pairs_cross_sum, pairs_inv,
                                     pairs_logdet, pairs_matvec, pairs_solve, pairs_to_full)
    rng = np.random.default_rng(7 + q)
    G = 150
    B = rng.normal(size=(G, q, q)) * rng.uniform(0.01, 30, size=(G, 1, 1))
    H = B @ np.swapaxes(B, 1, 2) + np.eye(q)
    M = B @ np.swapaxes(B, 1, 2)
    Hp, Mp = full_to_pairs(H), full_to_pairs(M)
    assert Hp.shape == (q * (q + 1) // 2, G)
    np.testing.assert_array_equal(pairs_to_full(Hp), H)
    g = rng.normal(size=(q, G))
    np.testing.assert_allclose(pairs_solve(Hp, g).T, np.linalg.solve(H, g.T[..., None])[..., 0],
                               rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(pairs_to_full(pairs_inv(Hp)), np.linalg.inv(H), rtol=1e-10,
                               atol=1e-13)
    np.testing.assert_allclose(pairs_logdet(Hp), np.linalg.slogdet(H)[1], rtol=1e-12)
    np.testing.assert_allclose(pairs_matvec(Mp, g).T, (M @ g.T[..., None])[..., 0], rtol=1e-12)
    Lambda = np.tril(rng.normal(size=(q, q)))
    np.testing.assert_allclose(pairs_to_full(congruence(Lambda) @ Mp), Lambda.T @ M @ Lambda,
                               rtol=1e-12, atol=1e-12 * np.abs(M).max())
    C = pairs_cross_sum(Hp, Mp)
    np.testing.assert_allclose(C, np.einsum("gxa,gby->xaby", H, M), rtol=1e-12)
