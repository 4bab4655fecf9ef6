"""Losses: values against their formulas, gradients against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf

DN, D0, M = 3, 4, 7
rng = np.random.default_rng(0)
X = rng.normal(size=(D0, M))
Y = rng.normal(size=(DN, M))
A = rng.normal(size=(M, DN, D0))
b = rng.normal(size=M)
ROWS = np.array([0, 1, 2, 2, 0, 1, 2])
COLS = np.array([0, 3, 1, 2, 2, 0, 3])
VALUES = rng.normal(size=M)
LABELS = np.array([0, 2, 1, 1, 0, 2, 2])
TARGET = rng.normal(size=(DN, D0))

LOSSES = {
    "whitened": (
        lf.losses.WhitenedSquare(TARGET),
        lambda W: 0.5 * np.sum((W - TARGET) ** 2),
    ),
    "regression": (
        lf.losses.SquareRegression(X, Y),
        lambda W: np.linalg.norm(W @ X - Y) ** 2 / (2 * M),
    ),
    "l4": (
        lf.losses.LpRegression(X, Y, 4),
        lambda W: sum(np.sum(np.abs(W @ X[:, i] - Y[:, i]) ** 4) for i in range(M)) / M,
    ),
    "sensing": (
        lf.losses.MatrixSensing(A, b),
        lambda W: sum((np.trace(W @ A[i].T) - b[i]) ** 2 for i in range(M)) / (2 * M),
    ),
    "completion": (
        lf.losses.MatrixCompletion(ROWS, COLS, VALUES, (DN, D0)),
        lambda W: np.mean((W[ROWS, COLS] - VALUES) ** 2) / 2,
    ),
    "logistic": (
        lf.losses.Logistic(X, LABELS),
        lambda W: np.mean(
            [
                np.log(np.sum(np.exp(W @ X[:, i]))) - (W @ X[:, i])[LABELS[i]]
                for i in range(M)
            ]
        ),
    ),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_value_matches_formula(name):
    loss, formula = LOSSES[name]
    W = rng.normal(size=(DN, D0))
    assert loss.shape == (DN, D0)
    np.testing.assert_allclose(loss(jnp.asarray(W)), formula(W), rtol=1e-12)


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_matches_central_difference(name):
    loss, formula = LOSSES[name]
    W = rng.normal(size=(DN, D0))
    grad = np.asarray(jax.grad(loss)(jnp.asarray(W)))
    h = 1e-5
    fd = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = h
        fd[idx] = (formula(W + E) - formula(W - E)) / (2 * h)
    # Central differences: truncation h^2 |f'''| / 6 plus rounding eps |f| / h, both
    # below 1e-7 here for losses of size O(10) with O(100) third derivatives.
    np.testing.assert_allclose(grad, fd, atol=1e-7 * max(1.0, np.abs(grad).max()))


def test_losses_are_pytrees_that_vmap():
    targets = jnp.stack([jnp.eye(2), 2 * jnp.eye(2)])
    values = jax.vmap(lambda t: lf.losses.WhitenedSquare(t)(jnp.zeros((2, 2))))(targets)
    np.testing.assert_allclose(values, [1.0, 4.0])


def test_bad_loss_data():
    with pytest.raises(ValueError, match="`Y` must match `X`"):
        lf.losses.SquareRegression(X, Y[:, :-1])
    with pytest.raises(ValueError, match="`b` must match `A`"):
        lf.losses.MatrixSensing(A, b[:-1])
    with pytest.raises(ValueError, match="`A` must have 3 dimension"):
        lf.losses.MatrixSensing(A[0], b)
    with pytest.raises(ValueError, match="`p` must be an even integer"):
        lf.losses.LpRegression(X, Y, 3)
    with pytest.raises(ValueError, match="`target` must be finite"):
        lf.losses.WhitenedSquare(np.full((2, 2), np.inf))
    with pytest.raises(ValueError, match=r"`cols` must hold indices in \[0, 4\)"):
        lf.losses.MatrixCompletion(ROWS, COLS + 1, VALUES, (DN, D0))
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 2\)"):
        lf.losses.Logistic(X, LABELS, num_classes=2)


def test_mean_losses_split_into_samples():
    """loss(W) = mean over samples; `subset` of every sample is the loss itself and the
    mean of the one-sample losses is the loss (to rounding)."""
    key = jax.random.PRNGKey(4)
    X, Y = jax.random.normal(key, (3, 7)), jax.random.normal(jax.random.PRNGKey(5), (2, 7))
    W = jax.random.normal(jax.random.PRNGKey(6), (2, 3))
    sensing_loss, _ = lf.problems.random_matrix_sensing(key, (2, 3), 1, 7)
    completion_loss, _ = lf.problems.random_matrix_completion(key, (2, 3), 1, 5)
    for loss in [lf.losses.SquareRegression(X, Y), lf.losses.LpRegression(X, Y, 4),
                 sensing_loss, completion_loss,
                 lf.losses.Logistic(X, jnp.arange(7) % 2, 2)]:
        m = loss.num_samples
        assert m == (5 if loss is completion_loss else 7)
        each = jnp.stack([loss.subset(jnp.asarray([i]))(W) for i in range(m)])
        np.testing.assert_allclose(jnp.mean(each), loss(W), rtol=1e-13)
        assert float(jnp.abs(loss.subset(jnp.arange(m))(W) - loss(W))) < 1e-13
    assert not hasattr(lf.losses.WhitenedSquare(jnp.eye(2)), "subset")
