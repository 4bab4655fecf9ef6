"""Host-side batch checks: bad batches are refused before anything is traced, with the
argument and the member named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import whitened

from lnn_flow._batching._batch_checks import _take, batch_size, check_on_host
from lnn_flow._batching._methods import METHODS

T1 = 1.0


@pytest.fixture(scope="module")
def loss():
    return whitened((2, 2))[0]


def test_batch_size_is_the_common_leading_axis():
    assert batch_size((jnp.zeros((3, 2, 2)), jnp.zeros((3, 4, 2)))) == 3
    with pytest.raises(ValueError, match="one leading batch axis of the same size"):
        batch_size((jnp.zeros((3, 2, 2)), jnp.zeros((2, 2, 2))))
    with pytest.raises(ValueError, match="at least one member"):
        batch_size(jnp.zeros((0, 2, 2)))
    with pytest.raises(ValueError, match="holds no arrays"):
        batch_size(())


def check(method, loss, init, *args, **kwargs):
    return check_on_host(method, METHODS[method].flow, loss, init, args, kwargs)


def test_depth_becomes_a_python_int_and_args_pass_through(loss):
    W0s = np.ones((2, 2, 2))
    args, kwargs = check("end_to_end", loss, W0s, np.int64(2), T1, rtol=1e-6)
    assert type(args[0]) is int and args[1:] == (T1,) and kwargs == {"rtol": 1e-6}


def test_bad_members_and_options_are_named(loss):
    W0s = np.ones((3, 2, 2))
    W0s[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"`init` member 2 has non-finite entries"):
        check("symmetric", loss, W0s, T1)
    with pytest.raises(ValueError, match=r"`rtol` must be >= 0"):
        check("symmetric", loss, np.ones((3, 2, 2)), T1, rtol=-1.0)
    with pytest.raises(ValueError, match=r"`lr` must be > 0"):
        check("descent", loss, (np.ones((3, 2, 2)),), -0.1, 5)


def test_initial_loss_is_taken_at_the_flow_state(loss):
    # symmetric_factor's state is (W^T, W): the loss at W W^T is finite here, and a
    # non-finite one names the member.
    check("symmetric_factor", loss, np.ones((2, 2, 2)), T1)
    bad = lambda W: jnp.where(W[0, 0] > 1.5, jnp.nan, jnp.sum(W**2))
    W0s = np.stack([np.eye(2), 2 * np.eye(2)])  # W W^T has entry 4 at member 1
    with pytest.raises(ValueError, match=r"`init` member 1 gives a non-finite loss"):
        check("symmetric_factor", bad, W0s, T1)


def test_member_zero_is_taken_as_indexing_takes_it():
    jax_leaves = (jnp.arange(12.0).reshape(3, 2, 2), jnp.arange(6.0).reshape(3, 2, 1))
    taken = _take(jax_leaves, 0)
    assert all(isinstance(x, jax.Array) for x in taken)
    for x, y in zip(taken, jax_leaves):
        np.testing.assert_array_equal(x, y[0])
    # Host arrays stay on the host: member 0 is a view, the batch is not transferred.
    host = np.arange(12.0).reshape(3, 2, 2)
    view = _take((host,), 0)[0]
    assert isinstance(view, np.ndarray) and np.shares_memory(view, host)
