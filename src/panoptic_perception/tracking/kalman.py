"""Constant-velocity Kalman filter on (x, y, vx, vy), many tracks at once.

The motion model is the discrete white-noise acceleration model (Bar-Shalom, Li, Kirubarajan,
"Estimation with Applications to Tracking and Navigation", 2001, sec. 6.3.3): the acceleration is
constant over one step and independent between steps, so per axis the state (p, v) moves by
G * a with G = (dt^2 / 2, dt) and the process noise is Q = G G^T sigma_a^2. A measurement is a
position with its own 2x2 covariance. States are (n, 4) arrays and covariances (n, 4, 4) arrays,
so one call predicts or updates every track.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

STATE_DIM = 4
MEASUREMENT_MATRIX = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])


def transition_matrix(dt_s: float) -> np.ndarray:
    """F: position += velocity * dt, velocity unchanged."""
    f = np.eye(STATE_DIM)
    f[0, 2] = f[1, 3] = dt_s
    return f


def process_noise(dt_s: float, acceleration_sigma_mps2: np.ndarray) -> np.ndarray:
    """Q (n, 4, 4) of the discrete white-noise acceleration model, one sigma per track."""
    sigma2 = np.asarray(acceleration_sigma_mps2, dtype=np.float64).reshape(-1) ** 2
    g_p, g_v = dt_s * dt_s / 2, dt_s  # G of one axis
    pp, pv, vv = g_p * g_p, g_p * g_v, g_v * g_v
    # x and y are independent: (x, vx) and (y, vy) each get G G^T
    q = np.array([[pp, 0.0, pv, 0.0], [0.0, pp, 0.0, pv], [pv, 0.0, vv, 0.0], [0.0, pv, 0.0, vv]])
    return sigma2[:, None, None] * q


def initial_state(position_xy: np.ndarray, position_cov: np.ndarray,
                  velocity_sigma_mps: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """States (n, 4) at the measured positions with zero velocity, and their covariances (n, 4, 4)."""
    position_xy = np.asarray(position_xy, dtype=np.float64).reshape(-1, 2)
    n = len(position_xy)
    x = np.zeros((n, STATE_DIM))
    x[:, :2] = position_xy
    p = np.zeros((n, STATE_DIM, STATE_DIM))
    p[:, :2, :2] = position_cov
    var_v = np.asarray(velocity_sigma_mps, dtype=np.float64).reshape(-1) ** 2
    p[:, 2, 2] = var_v
    p[:, 3, 3] = var_v
    return x, p


def predict(x: np.ndarray, p: np.ndarray, dt_s: float,
            acceleration_sigma_mps2: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """States and covariances dt_s later: F x, F P F^T + Q."""
    f = transition_matrix(dt_s)
    x_new = x @ f.T
    p_new = f @ p @ f.T + process_noise(dt_s, acceleration_sigma_mps2)
    return x_new, p_new


def _inverse_2x2(s: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Inverses and determinants of (..., 2, 2) matrices (closed form: cheaper than a batched solve)."""
    a, b, c, d = s[..., 0, 0], s[..., 0, 1], s[..., 1, 0], s[..., 1, 1]
    det = a * d - b * c
    inv = np.empty_like(s)
    inv[..., 0, 0], inv[..., 0, 1], inv[..., 1, 0], inv[..., 1, 1] = d, -b, -c, a
    inv /= det[..., None, None]
    return inv, det


def mahalanobis_sq(x: np.ndarray, p: np.ndarray, z: np.ndarray, r: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Squared Mahalanobis distances (n, m) of measurements z (m, 2) from predicted tracks, and log det S.

    Both come from the same innovation covariance S = H P H^T + R; the log-determinant lets an
    assignment use the measurement's negative log-likelihood, which keeps an uncertain coasting
    track (whose wide S makes every measurement look close) from stealing one from a sure track.
    nu^T S^-1 nu is written out for the 2x2 S = [[a, b], [c, d]]: (d u^2 - (b + c) u v + a v^2) / det S,
    one pass per term over the (n, m) pairs instead of (n, m, 2, 2) inverses.
    """
    a = p[:, None, 0, 0] + r[None, :, 0, 0]
    b_plus_c = (p[:, None, 0, 1] + r[None, :, 0, 1]) + (p[:, None, 1, 0] + r[None, :, 1, 0])
    d = p[:, None, 1, 1] + r[None, :, 1, 1]
    det = a * d - (p[:, None, 0, 1] + r[None, :, 0, 1]) * (p[:, None, 1, 0] + r[None, :, 1, 0])
    u = z[None, :, 0] - x[:, None, 0]
    v = z[None, :, 1] - x[:, None, 1]
    d2 = (d * u * u - b_plus_c * u * v + a * v * v) / det
    return d2, np.log(det)


def update(x: np.ndarray, p: np.ndarray, z: np.ndarray, r: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Posterior states and covariances of tracks x (k, 4) given their measurements z (k, 2), R (k, 2, 2).

    Joseph form (I - K H) P (I - K H)^T + K R K^T: symmetric and positive for any gain, so the
    covariance stays valid after thousands of updates in float64.
    """
    s = p[:, :2, :2] + r
    inv, _ = _inverse_2x2(s)
    k = p[:, :, :2] @ inv  # P H^T S^-1, (k, 4, 2)
    k_t = np.swapaxes(k, 1, 2)
    x_new = x + (k @ (z - x[:, :2])[:, :, None])[:, :, 0]
    # H takes the first two rows: (I - K H) P = P - K P[:2], and (...)(I - K H)^T = (...) - (...)[:, :2] K^T,
    # products of 4x2 by 2x4 instead of 4x4 by 4x4
    a_p = p - k @ p[:, :2, :]
    p_new = a_p - a_p[:, :, :2] @ k_t
    p_new += k @ r @ k_t
    p_new += np.swapaxes(p_new, 1, 2)
    p_new *= 0.5
    return x_new, p_new
