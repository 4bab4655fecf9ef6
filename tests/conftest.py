"""Shared problems and the tolerance rule used across tests.

Tolerance rule: the PID controller keeps each step's local error below
`rtol * |y| + atol`. Over `N` steps the global error of a flow that does not expand
errors is at most the sum of local errors, `N * (rtol * |y|_max + atol)`; that is the
bound `trajectory_tolerance` returns. Two independent solves differ by at most twice it.
"""

import jax
import jax.numpy as jnp
import pytest

import lnn_flow as lf

RTOL = 1e-10
ATOL = 1e-12


def trajectory_tolerance(num_steps, scale, rtol=RTOL, atol=ATOL):
    return float(num_steps) * (rtol * float(scale) + atol)


@pytest.fixture(scope="session")
def key():
    return jax.random.PRNGKey(0)


def sensing(shape, rank=2, m=None, seed=0):
    m = m if m is not None else 2 * shape[0] * shape[1] // 3
    return lf.problems.random_matrix_sensing(jax.random.PRNGKey(seed), shape, rank, m)


def whitened(shape, seed=1):
    target = jax.random.normal(jax.random.PRNGKey(seed), shape)
    return lf.losses.WhitenedSquare(target), target


def all_finite(x):
    return bool(jnp.all(jnp.isfinite(x)))
