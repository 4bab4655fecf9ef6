"""Shared problems, helpers and the tolerance rules used across tests.

Tolerance rule (`trajectory_tolerance`): the PID controller keeps each step's local
error below `rtol * |y| + atol`. Over `N` steps the global error of a flow that does not
expand errors is at most the sum of local errors, `N * (rtol * |y|_max + atol)`. Two
independent solves differ by at most twice it.

The rule assumes errors do not grow. Near a saddle they do: a flow from a small init
leaves the origin (a saddle of eq. 2 for depth >= 2) along its unstable directions,
which amplify every earlier error by `exp(lambda t)`, and a solve is at its most
sensitive there. For flows escaping a saddle (init scale well below the solution's,
depth >= 2), tests therefore do not use the rule; they compare against a
tight-tolerance reference (`REFERENCE_RTOL`: the same ODE at 1000x smaller tolerances,
whose own error is ~1000x below the solve under test even after amplification), e.g.
"the pooled member is as accurate as the member solved alone" as
`|pooled - ref| <= SAME_SIZE * |alone - ref|`.

Where each applies: the pool tests (tests/test_pool.py, and the 8-device pool check in
tests/test_batch.py) start seeds at norms 1e-3 and 1e-2 at depth 3 and use the
reference; the rule stays where flows start at norm >= 0.3 of an O(1) solution (tests
in test_factor.py, test_end_to_end.py, test_compare.py, test_sweep_methods.py), which
escape no saddle.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import pytest

import lnn_flow as lf

RTOL = 1e-10
ATOL = 1e-12
# References for flows that escape a saddle: 1000x tighter than RTOL/ATOL. Tsit5 at
# 1e-13 stays above float64 rounding (eps = 2.2e-16 per step, ~1e3 steps: 2e-13).
REFERENCE_RTOL = 1e-13
REFERENCE_ATOL = 1e-15
# Two solves at the same tolerances whose step sequences differ (a pool's rounds, a
# shard's padding) make errors of the same size, not the same errors: this factor
# allows for the spread between such samples (seen <= 4 in tests/test_pool.py).
SAME_SIZE = 10.0


def trajectory_tolerance(num_steps, scale, rtol=RTOL, atol=ATOL):
    return float(num_steps) * (rtol * float(scale) + atol)


@pytest.fixture(scope="session")
def key():
    return jax.random.PRNGKey(0)


def sensing(shape, rank=2, m=None, seed=0, dtype=jnp.float64):
    m = m if m is not None else 2 * shape[0] * shape[1] // 3
    return lf.problems.random_matrix_sensing(
        jax.random.PRNGKey(seed), shape, rank, m, dtype=dtype
    )


def whitened(shape, seed=1):
    target = jax.random.normal(jax.random.PRNGKey(seed), shape)
    return lf.losses.WhitenedSquare(target), target


def strict_json(path):
    """A JSON file parsed as a strict reader (JavaScript's `JSON.parse`, `jq`) does:
    bare NaN and Infinity, which Python's `json` writes by default, are refused."""

    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(pathlib.Path(path).read_text(), parse_constant=refuse)


def strict_json_tree(directory):
    """Every `*.json` file under `directory`, parsed strictly ([`strict_json`][])."""
    paths = sorted(pathlib.Path(directory).rglob("*.json"))
    return {p: strict_json(p) for p in paths}


def all_finite(x):
    return bool(jnp.all(jnp.isfinite(x)))


def member(tree, i):
    """Member `i` of a batched pytree (leading seed axis)."""
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def inits_over_scales(dims, num, low, high, seed=3):
    """`num` balanced inits of `dims` with norms log-spaced over `[10^low, 10^high]`:
    plateaus, hence step counts, differ from member to member."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num)
    scales = jnp.logspace(low, high, num)
    return jax.vmap(lambda k, s: lf.init.balanced(k, dims, s))(keys, scales)


def gradient_counter(calls: list):
    """An identity on `W` whose backward pass appends to `calls`: wrapped around the
    argument of a loss, it counts the loss's gradient (= vector-field) evaluations;
    forward evaluations are not counted."""

    @jax.custom_vjp
    def tap(W):
        return W

    def tap_bwd(_, g):
        jax.debug.callback(lambda: calls.append(1))
        return (g,)

    tap.defvjp(lambda W: (W, None), tap_bwd)
    return tap


def spread_problem(dims, num, low, high):
    """A sensing loss (12 measurements) on `dims` with `num` balanced inits of norms
    log-spaced over `[10^low, 10^high]` (the batch and pool tests' problem)."""
    loss, _ = sensing((dims[-1], dims[0]), m=12)
    return loss, inits_over_scales(dims, num, low, high)


# "To rounding" in descent tests: N float64 steps accumulate about N * eps (eps =
# 2.2e-16) relative error per chain of operations; with N <= a few thousand and a few
# dozen flops per entry, 1e-11 relative bounds it with a wide margin.
ROUNDING = 1e-11

# The descent problem of tests/test_descent.py and tests/test_compare.py: depth 3,
# d = (4, 5, 3, 6), sensing of a rank-2 truth, balanced init of norm 0.5.
DESCENT_DIMS = (4, 5, 3, 6)


@pytest.fixture(scope="session")
def descent_problem():
    loss, _ = sensing((DESCENT_DIMS[-1], DESCENT_DIMS[0]))
    ws0 = lf.init.balanced(jax.random.PRNGKey(3), DESCENT_DIMS, 0.5)
    return loss, ws0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module: a module reuses its own
    (module-scoped fixtures), and a session that keeps every module's programs grows
    until XLA's CPU compiler crashes (seen as a segfault in `backend_compile_and_load`
    hundreds of tests in, never in a module run alone)."""
    yield
    jax.clear_caches()
