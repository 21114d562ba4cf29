"""Closed-form 1x1 / 2x2 inverse, solve and log-det against numpy.linalg (q = 3 falls back)."""
import numpy as np
import pytest

from mlglm.core.smallmat import spd_inv, spd_logdet, spd_solve


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
