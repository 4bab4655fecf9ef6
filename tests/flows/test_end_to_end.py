"""Theorem 1 (eq. 3): the end-to-end vector field and flow."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATOL, RTOL, sensing, trajectory_tolerance, whitened

import lnn_flow as lf

SHAPES = [(4, 4), (3, 5), (5, 3)]


def _matrix_with_spectrum(shape, spectrum, seed):
    """W = U diag(spectrum) V^T from random orthogonal U, V: the exact spectrum is known."""
    dn, d0 = shape
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    U, _ = np.linalg.qr(np.asarray(jax.random.normal(k1, (dn, dn))))
    V, _ = np.linalg.qr(np.asarray(jax.random.normal(k2, (d0, d0))))
    S = np.zeros(shape)
    S[np.arange(len(spectrum)), np.arange(len(spectrum))] = spectrum
    return U @ S @ V.T, U, V


def _reference_field(grad, U, V, spectrum, depth):
    """Eq. (3) term by term, in the full singular bases, from the exact spectrum:
    [W W^T]^a = U diag(sigma^{2a}) U^T with sigma = 0 padded and 0^0 = 1."""
    dn, d0 = grad.shape
    left = np.zeros(dn)
    right = np.zeros(d0)
    left[: len(spectrum)] = spectrum
    right[: len(spectrum)] = spectrum
    pw = lambda s, a: np.ones_like(s) if a == 0 else s ** (2 * a)
    total = np.zeros_like(grad)
    for j in range(1, depth + 1):
        L = U @ np.diag(pw(left, (j - 1) / depth)) @ U.T
        R = V @ np.diag(pw(right, (depth - j) / depth)) @ V.T
        total += L @ grad @ R
    return -total


SPECTRA = {
    "full_rank": lambda k: np.linspace(2.0, 0.5, k),
    "rank_deficient": lambda k: np.concatenate([np.linspace(1.5, 0.7, k - 1), [0.0]]),
    "zero": lambda k: np.zeros(k),
}


@pytest.mark.parametrize("decomposition", ["svd", "gram"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spectrum", list(SPECTRA))
def test_field_matches_termwise_formula(depth, shape, spectrum, decomposition):
    spec = SPECTRA[spectrum](min(shape))
    W, U, V = _matrix_with_spectrum(shape, spec, seed=depth)
    loss, _ = sensing(shape)
    grad = np.asarray(jax.grad(loss)(W))
    got = lf.end_to_end_vector_field(loss, W, depth, decomposition=decomposition)
    want = _reference_field(grad, U, V, spec, depth)
    # Rounding only: a few eps times the largest term (an SVD is backward stable; the
    # Gram route loses eps * cond(W)^2 <= 16 eps here, as these spectra span <= 4x).
    scale = np.abs(grad).max() * max(1.0, spec.max()) ** 2 * depth
    np.testing.assert_allclose(got, want, atol=1e-12 * scale, rtol=0)


@pytest.mark.parametrize(
    "dims", [(4, 4, 4), (3, 6, 5), (5, 2, 7, 3), (4, 4, 4, 4, 4), (3, 7, 6, 8, 2)]
)
def test_field_is_derivative_of_product_under_balanced_factors(dims):
    """Theorem 1: d/dt (W_n ... W_1) under eq. (2) from balanced factors equals eq. (3)."""
    shape = (dims[-1], dims[0])
    loss, _ = sensing(shape)
    ws = lf.init.balanced(jax.random.PRNGKey(3), dims, 1.3)
    factor_velocity = lf.factor_vector_field(loss, ws)
    _, product_velocity = jax.jvp(lf.end_to_end, (ws,), (factor_velocity,))
    got = lf.end_to_end_vector_field(loss, lf.end_to_end(ws), len(dims) - 1)
    np.testing.assert_allclose(got, product_velocity, atol=1e-12, rtol=1e-10)


def test_origin_is_stationary_for_depth_two_and_more():
    loss, _ = whitened((3, 4))
    zero = jnp.zeros((3, 4))
    assert jnp.all(lf.end_to_end_vector_field(loss, zero, 2) == 0)
    assert jnp.all(lf.end_to_end_vector_field(loss, zero, 3) == 0)
    np.testing.assert_array_equal(
        lf.end_to_end_vector_field(loss, zero, 1), -jax.grad(loss)(zero)
    )


def test_rounding_level_singular_values_are_not_amplified():
    """An exactly rank-1 W built as an outer product: its zero singular values come out
    of an SVD at ~1e-17, and (1e-17)^(1/3) would leak ~1e-6 into the field."""
    u = jnp.array([1.0, 2.0, -1.0, 0.5])
    v = jnp.array([0.3, -1.0, 2.0, 1.0, 0.7])
    W = jnp.outer(u, v)
    loss, _ = sensing(W.shape)
    got = lf.end_to_end_vector_field(loss, W, 3)
    U, s, Vt = np.linalg.svd(np.asarray(W))
    want = _reference_field(np.asarray(jax.grad(loss)(W)), U, Vt.T, [s[0], 0, 0, 0], 3)
    np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


# --- Flows: the product of the factor flow is the end-to-end flow (Theorem 1) ----------

FLOW_CASES = [
    ("sensing", (4, 4)),
    ("sensing", (4, 4, 4)),
    ("sensing", (3, 5, 4, 6)),
    ("sensing", (5, 5, 5, 5, 5)),
    ("whitened", (5, 3)),
    ("whitened", (5, 6, 3)),
    ("whitened", (4, 4, 4, 4)),
    ("whitened", (3, 4, 6, 5, 2)),
]
TS = jnp.linspace(0.0, 6.0, 13)


@pytest.mark.parametrize("kind,dims", FLOW_CASES)
def test_factor_flow_product_equals_end_to_end_flow(kind, dims):
    shape = (dims[-1], dims[0])
    loss, _ = sensing(shape) if kind == "sensing" else whitened(shape)
    ws0 = lf.init.balanced(jax.random.PRNGKey(7), dims, 0.3)
    depth = len(dims) - 1
    factor = lf.factor_flow(loss, ws0, TS[-1], TS, rtol=RTOL, atol=ATOL)
    e2e = lf.end_to_end_flow(loss, lf.end_to_end(ws0), depth, TS[-1], TS, rtol=RTOL,
                             atol=ATOL)
    assert factor.success and e2e.success
    assert factor.reached.all() and e2e.reached.all()
    scale = jnp.abs(factor.end_to_end).max()
    steps = max(int(factor.stats.num_steps), int(e2e.stats.num_steps))
    tol = 2 * trajectory_tolerance(steps, scale)
    error = jnp.abs(factor.end_to_end - e2e.end_to_end).max()
    assert error <= tol, (error, tol)
    # The flows move: agreement is not agreement of two constants.
    assert e2e.loss[-1] < 0.5 * e2e.loss[0]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_loss_is_non_increasing(depth):
    loss, _ = sensing((4, 5))
    ws0 = lf.init.balanced(jax.random.PRNGKey(2), (5,) + (4,) * depth, 1e-2)
    ts = jnp.linspace(0.0, 40.0, 81)
    sol = lf.end_to_end_flow(loss, lf.end_to_end(ws0), depth, ts[-1], ts)
    # d l/dt = -vec(grad)^T P vec(grad) <= 0; between saves only solver error can
    # raise it, by at most rtol * l + atol per step in each step.
    slack = float(sol.stats.num_steps) * (1e-8 * sol.loss[0] + 1e-10)
    assert jnp.all(jnp.diff(sol.loss) <= slack)
    assert sol.loss[-1] < 1e-2 * sol.loss[0]


@pytest.fixture(scope="module")
def small_init_sensing():
    """d = 20, depth 3, init norm 1e-3 (so |W0| ~ 1e-9), m = 8 d, to t = 60 (past the
    plateau); the factor flow at rtol 1e-10 (errors ~1e-10 relative, its factors are
    ~1e-3, well above atol) is the reference."""
    d = 20
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(d), (d, d), 2, 8 * d)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), (d,) * 4, 1e-3)
    ts = jnp.linspace(0.0, 60.0, 31)
    ref = lf.factor_flow(loss, ws0, ts[-1], ts, rtol=RTOL, atol=ATOL, max_steps=20_000)
    assert ref.success and ref.loss[-1] < 1e-3 * ref.loss[0]
    return loss, lf.end_to_end(ws0), ts, ref.end_to_end


def test_default_atol_keeps_small_init_accurate(small_init_sensing):
    loss, W0, ts, want = small_init_sensing
    scale = jnp.linalg.norm(want, axis=(1, 2)).max()

    def error(**kwargs):
        sol = lf.end_to_end_flow(loss, W0, 3, ts[-1], ts, rtol=RTOL, max_steps=20_000,
                                 **kwargs)
        assert sol.success
        return jnp.linalg.norm(sol.end_to_end - want, axis=(1, 2)).max() / scale

    # The accuracy target of the SVD form: relative trajectory error <= 1e-8 at rtol
    # 1e-10 (measured 2e-11). A fixed atol = 1e-10 >> |W0| loosens the plateau (3e-8).
    assert error() <= 1e-8
    assert error(atol=1e-10) > 1e-8


def test_loss_stop_with_the_tiny_default_atol(small_init_sensing):
    # The default atol here is ~1e-19 (|W0| ~ 1e-9): the stop's root find must not ask
    # the loss for that absolute accuracy.
    loss, W0, ts, want = small_init_sensing
    threshold = 1e-2 * float(loss(W0))
    sol = lf.end_to_end_flow(loss, W0, 3, ts[-1], ts, rtol=RTOL, max_steps=20_000,
                             loss_threshold=threshold)
    assert sol.success and bool(sol.stopped), sol.message
    assert abs(float(sol.loss_final) - threshold) <= 1e-6 * threshold
    assert 0.0 < float(sol.t_final) < float(ts[-1])


def test_bad_decomposition_is_named():
    loss, _ = whitened((3, 4))
    with pytest.raises(ValueError, match="`decomposition` must be one of"):
        lf.end_to_end_vector_field(loss, jnp.ones((3, 4)), 2, decomposition="qr")
    with pytest.raises(ValueError, match="`decomposition` must be one of"):
        lf.end_to_end_flow(loss, jnp.ones((3, 4)), 2, 1.0, decomposition="eig")


def test_end_to_end_flow_rejects_bad_input():
    loss, _ = whitened((3, 4))
    W0 = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="`depth` must be >= 1"):
        lf.end_to_end_flow(loss, W0, 0, 1.0)
    with pytest.raises(ValueError, match="`W0` gives an end-to-end matrix of shape"):
        lf.end_to_end_flow(loss, jnp.zeros((4, 3)), 2, 1.0)
    with pytest.raises(ValueError, match="`W0` must be finite"):
        lf.end_to_end_flow(loss, W0.at[0, 0].set(jnp.nan), 2, 1.0)
    with pytest.raises(ValueError, match="`t1` must be greater than t0"):
        lf.end_to_end_flow(loss, W0, 2, 0.0)
    with pytest.raises(ValueError, match="`W0` must have 2 dimension"):
        lf.end_to_end_flow(loss, jnp.zeros(3), 2, 1.0)
    with pytest.raises(ValueError, match="`rtol` must be >= 0"):
        lf.end_to_end_flow(loss, W0, 2, 1.0, rtol=-1e-3)
    with pytest.raises(ValueError, match="`W` gives an end-to-end matrix"):
        lf.end_to_end_vector_field(loss, jnp.zeros((2, 2)), 2)


@pytest.mark.parametrize("dims", [(3, 4, 5), (5, 4, 3)])  # W^T W and W W^T eigh
def test_gram_flow_agrees_with_svd_flow_on_a_well_conditioned_path(dims):
    """`decomposition="gram"` squares the condition number: it resolves singular
    values down to ~1e-7 s_max. On a path whose spectrum stays within 1e-2 s_max its
    field differs from the SVD's by rounding (eps * cond^2 <= 2e-12 relative), far
    below the solves' tolerance: the two flows agree to twice conftest's rule (init 0.3,
    full rank from the start: no saddle to escape)."""
    shape = (dims[-1], dims[0])
    loss, _ = whitened(shape)
    W0 = lf.end_to_end(lf.init.balanced(jax.random.PRNGKey(7), dims, 0.3))
    svd = lf.end_to_end_flow(loss, W0, 2, TS[-1], TS, rtol=RTOL, atol=ATOL)
    gram = lf.end_to_end_flow(loss, W0, 2, TS[-1], TS, rtol=RTOL, atol=ATOL,
                              decomposition="gram")
    assert svd.success and gram.success
    s = np.linalg.svd(np.asarray(svd.end_to_end), compute_uv=False)
    assert (s[:, -1] / s[:, 0]).min() > 1e-2  # the precondition, checked
    scale = float(jnp.abs(svd.end_to_end).max())
    steps = max(int(svd.stats.num_steps), int(gram.stats.num_steps))
    tol = 2 * trajectory_tolerance(steps, scale)
    error = float(jnp.abs(svd.end_to_end - gram.end_to_end).max())
    assert error <= tol, (error, tol)
    assert svd.loss[-1] < 0.5 * svd.loss[0]  # the flows move


# --- Derivatives of the field: the Daleckii-Krein rule (`_divided_differences`) ----

# W with a smooth field around it: distinct singular values, a repeated one (0.1 I,
# where differentiating the SVD gives NaN), and non-square of full rank (B = W^T W or
# A = W W^T has a null space, but W +- hE keeps it: rank stays min(shape)).
SMOOTH_POINTS = {
    "distinct": ((4, 4), [2.0, 1.3, 0.8, 0.5]),
    "repeated": ((3, 3), None),
    "full_3x5": ((3, 5), [1.5, 1.0, 0.6]),
    "full_5x3": ((5, 3), [1.5, 1.0, 0.6]),
}
# Rank below min(shape): along W + tE the zero singular values grow like |t|, so the
# terms A^{p} (p = (j-1)/n) carry |t|^{2p} and t |t|^{2p}: the field is not
# differentiable there and the central difference converges to the JVP (its symmetric
# derivative) only like h^{2/n} (seen, relative h = 1e-5: relative errors <= 1.2e-5,
# 2.0e-4, 9.7e-4 at depths 2, 3, 4, each 100^{2/n} times (within 4%) that at h = 1e-3).
KINKED_POINTS = {
    "rank1_3x3": ((3, 3), [1.2, 0.0, 0.0]),
    "deficient_3x5": ((3, 5), [1.5, 0.7, 0.0]),
    "deficient_5x3": ((5, 3), [1.5, 0.7, 0.0]),
}


def _point(shape, spectrum):
    if spectrum is None:
        return 0.1 * jnp.eye(shape[0])
    return jnp.asarray(_matrix_with_spectrum(shape, np.asarray(spectrum), seed=5)[0])


def _jvp_error(name, points, depth, decomposition, hs):
    """max |JVP - central difference| / max |JVP| of the field at `points[name]` along
    a random direction, for each relative step in `hs` (h scaled by max |W|)."""
    shape, spectrum = points[name]
    W = _point(shape, spectrum)
    loss, _ = sensing(shape)
    E = jax.random.normal(jax.random.PRNGKey(11), shape)

    def field(W):
        return lf.end_to_end_vector_field(loss, W, depth, decomposition=decomposition)

    _, jvp = jax.jvp(field, (W,), (E,))
    assert bool(jnp.all(jnp.isfinite(jvp)))
    size = float(jnp.abs(jvp).max())
    scale = float(jnp.abs(W).max())
    errors = []
    for h in hs:
        fd = (field(W + h * scale * E) - field(W - h * scale * E)) / (2 * h * scale)
        errors.append(float(jnp.abs(fd - jvp).max()) / size)
    return errors


@pytest.mark.parametrize("decomposition", ["svd", "gram"])
@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("name", list(SMOOTH_POINTS))
def test_field_jvp_matches_central_differences(name, depth, decomposition):
    """The central difference errs by O(h^2) truncation (|F'''| h^2 / 6) plus O(eps/h)
    rounding (eps |F| / h): at relative h = 1e-5 that is ~1e-10 + ~2e-11 relative
    (seen <= 6.8e-10 on these points, truncation-dominated). 1e-8 leaves a 15x margin;
    an error in the rule shows as O(1)."""
    (error,) = _jvp_error(name, SMOOTH_POINTS, depth, decomposition, [1e-5])
    assert error <= 1e-8, error


@pytest.mark.parametrize("decomposition", ["svd", "gram"])
@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("name", list(KINKED_POINTS))
def test_field_jvp_is_the_symmetric_derivative_at_rank_deficient_w(
    name, depth, decomposition
):
    """At rank(W) < min(shape) the JVP is the limit of central differences, which
    converge like h^{2/n} (see `KINKED_POINTS`): 100x smaller h must shrink the error by
    ~100^{-2/n} (1.5x allowance; seen within 4%), and it stays below 10 h^{2/n} (seen
    <= 1.2 h^{2/n})."""
    hs = [1e-3, 1e-5]
    errors = _jvp_error(name, KINKED_POINTS, depth, decomposition, hs)
    rate = 2 / depth
    for h, error in zip(hs, errors):
        assert error <= 10 * h**rate, (h, error)
    assert errors[1] <= 1.5 * (hs[1] / hs[0]) ** rate * errors[0], errors


NAN_PRONE = {
    "repeated": 0.1 * jnp.eye(3),
    # Built as an outer product: its zero singular values come out at rounding level.
    "rank1": jnp.outer(jnp.array([1.0, 2.0, -1.0]), jnp.array([0.3, -1.0, 2.0])),
    "zero_3x4": jnp.zeros((3, 4)),
}


@pytest.mark.parametrize("decomposition", ["svd", "gram"])
@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("name", list(NAN_PRONE))
def test_field_jacobians_are_finite_and_agree(name, depth, decomposition):
    """Where differentiating the SVD divides by zero gaps, both Jacobians are finite and
    reverse mode (the transposed rule) equals forward mode to rounding (seen <= 4.2e-16
    relative; at W = 0 both are exactly 0)."""
    W = NAN_PRONE[name]
    loss, _ = sensing(W.shape)

    def field(W):
        return lf.end_to_end_vector_field(loss, W, depth, decomposition=decomposition)

    forward = jax.jacfwd(field)(W)
    reverse = jax.jacrev(field)(W)
    assert bool(jnp.all(jnp.isfinite(forward)))
    scale = float(jnp.abs(forward).max())
    np.testing.assert_allclose(reverse, forward, atol=1e-13 * max(scale, 1.0), rtol=0)


def test_implicit_solver_on_the_end_to_end_flow():
    """Kvaerno5 needs the field's Jacobian; from 0.1 I (repeated singular values) it
    was NaN. Both solves keep local errors below rtol |W| + atol, so each is within
    conftest's `trajectory_tolerance` of the exact flow and they differ by at most the
    sum of the two (init 0.1 I of an O(1) target: conftest's rule applies). Seen:
    1.5e-9 against a bound of 1.6e-5 (Kvaerno5 1298 steps, half rejected, as on the
    factor flow; Tsit5 135)."""
    loss, _ = whitened((3, 3))
    W0 = 0.1 * jnp.eye(3)
    ts = jnp.linspace(0.0, 5.0, 11)
    rtol = 1e-8
    atol = float(lf._flows._end_to_end.default_atol(W0, rtol))
    implicit = lf.end_to_end_flow(loss, W0, 3, 5.0, ts, solver=diffrax.Kvaerno5(),
                                  rtol=rtol)
    explicit = lf.end_to_end_flow(loss, W0, 3, 5.0, ts, rtol=rtol)
    assert implicit.success and explicit.success, implicit.message
    assert implicit.reached.all()
    scale = float(jnp.abs(explicit.end_to_end).max())
    tol = sum(
        trajectory_tolerance(int(sol.stats.num_steps), scale, rtol=rtol, atol=atol)
        for sol in (implicit, explicit)
    )
    error = float(jnp.abs(implicit.end_to_end - explicit.end_to_end).max())
    assert error <= tol, (error, tol)
    assert explicit.loss[-1] < 0.1 * explicit.loss[0]  # the flow moves


def _final_loss_gradient_check(final_loss, x0, direction, h=1e-5):
    """`<grad, direction>` by reverse mode through the solve and by a central
    difference: (value, finite difference)."""
    grad = jax.grad(final_loss)(x0)
    leaves = jax.tree_util.tree_leaves
    got = sum(float(jnp.vdot(g, e)) for g, e in zip(leaves(grad), leaves(direction)))
    shift = lambda s: jax.tree_util.tree_map(lambda x, e: x + s * h * e, x0, direction)
    fd = (float(final_loss(shift(1.0))) - float(final_loss(shift(-1.0)))) / (2 * h)
    return got, fd


# Reverse mode through the solve differentiates the discrete solution; the central
# difference (h = 1e-5) of the same solve errs by its O(h^2) truncation (seen 2.3e-6
# relative at h = 1e-4, so ~2e-8 at 1e-5) plus the change in the solver's error between
# the two solves (rtol 1e-10). Seen: 2.3e-8 (end-to-end), 6.2e-9 (factor); 1e-6 bounds
# both with a wide margin, while a wrong rule errs by O(1).
GRAD_RTOL = 1e-6


def test_gradient_through_the_end_to_end_flow_from_repeated_singular_values():
    loss, _ = whitened((3, 3))
    W0 = 0.1 * jnp.eye(3)
    E = jax.random.normal(jax.random.PRNGKey(11), (3, 3))

    def final_loss(W0):
        return lf.end_to_end_flow(loss, W0, 3, 5.0, rtol=1e-10, atol=1e-12).loss_final

    got, fd = _final_loss_gradient_check(final_loss, W0, E)
    assert np.isfinite(got)
    assert abs(got - fd) <= GRAD_RTOL * abs(fd), (got, fd)


def test_gradient_through_the_factor_flow_from_balanced_factors_of_0_1_identity():
    loss, _ = whitened((3, 3))
    ws0 = (0.1 ** (1 / 3) * jnp.eye(3),) * 3  # balanced, end-to-end 0.1 I
    keys = jax.random.split(jax.random.PRNGKey(12), 3)
    Es = tuple(jax.random.normal(k, (3, 3)) for k in keys)

    def final_loss(ws):
        return lf.factor_flow(loss, ws, 5.0, rtol=1e-10, atol=1e-12).loss_final

    got, fd = _final_loss_gradient_check(final_loss, ws0, Es)
    assert abs(got - fd) <= GRAD_RTOL * abs(fd), (got, fd)
