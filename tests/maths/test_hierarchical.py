"""The hierarchical factorization's model: tensor, trees, weights, inits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow._maths import _hierarchical as H

ht = lf.tensor.hierarchical
SHAPE = (2, 3, 4, 5)


def weights(tree, widths, output=True, seed=0):
    shapes = H.tree_shape_widths(tree, SHAPE[: len(H.leaves(tree))], widths, output)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    return tuple(jax.random.normal(k, s) for k, s in zip(keys, shapes))


def test_binary_tree_pairs_adjacent_modes():
    assert ht.binary_tree(2) == (0, 1)
    assert ht.binary_tree(4) == ((0, 1), (2, 3))
    assert ht.binary_tree(5) == (((0, 1), (2, 3)), 4)
    assert sorted(ht.leaves(ht.binary_tree(7))) == list(range(7))


@pytest.mark.parametrize("tree", [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((3, 0), (1, 2))])
def test_end_to_end_is_the_explicit_contraction(tree):
    """Rounding only: one einsum against the recursion (a few products of O(1) numbers)."""
    ws = weights(tree, (3, 2))
    root, n, a, b, m, c, d = ws
    (i, j), (k, l) = tree
    letters = "abcd"
    spec = f"ro,sr,{letters[i]}s,{letters[j]}s,tr,{letters[k]}t,{letters[l]}t->abcd"
    expected = np.einsum(spec, root, n, a, b, m, c, d)
    np.testing.assert_allclose(ht.end_to_end(ws, tree), expected, rtol=1e-13, atol=1e-13)


def test_one_level_tree_without_output_is_cp():
    tree = (0, 1, 2)
    ws = weights(tree, 4, output=False)
    np.testing.assert_allclose(ht.end_to_end(ws, tree, False), lf.tensor.end_to_end(ws),
                               rtol=1e-13, atol=1e-13)


def test_matricization_singular_values_match_numpy():
    tree = ((0, 1), (2, 3))
    W = ht.end_to_end(weights(tree, (3, 2)), tree)
    got = ht.matricization_singular_values(W, tree)
    A = np.asarray(W)
    for node, sv in zip(ht.nodes(tree)[1:], got):
        rows = ht.leaves(node)
        cols = [m for m in range(4) if m not in rows]
        M = A.transpose(rows + cols).reshape(int(np.prod([A.shape[m] for m in rows])), -1)
        np.testing.assert_allclose(sv, np.linalg.svd(M, compute_uv=False), rtol=1e-12,
                                   atol=1e-12 * np.abs(A).max())
    # the children of a width-2 node: matricization rank <= 2 (local components bound it)
    assert all(int(np.sum(sv > 1e-10 * sv[0])) <= 3 for sv in got)


@pytest.mark.parametrize("output", [True, False])
@pytest.mark.parametrize("widths", [(3, 2), 5])
def test_balanced_init_is_balanced_with_unit_matrix_norms(output, widths):
    scale = 0.3
    ws = ht.balanced(jax.random.PRNGKey(1), (4, 4, 4, 4), widths, scale, output=output)
    tree = ht.binary_tree(4)
    H.ht_weights(ws, tree, output)  # the shapes chain
    np.testing.assert_allclose([float(jnp.linalg.norm(w)) for w in ws], scale, rtol=1e-12)
    # Sinkhorn to rounding: the gaps are ~1e-16 of the squared norms (~scale^2 / R)
    assert float(jnp.abs(ht.unbalancedness(ws, tree, output)).max()) < 1e-12 * scale**2


def test_gaussian_init_is_unbalanced():
    ws = ht.gaussian(jax.random.PRNGKey(1), (4, 4, 4, 4), 3, 0.1)
    assert float(jnp.abs(ht.unbalancedness(ws, ht.binary_tree(4))).max()) > 1e-3


def test_local_component_norms_are_products_of_vector_norms():
    tree = ((0, 1), (2, 3))
    ws = weights(tree, (3, 2))
    root, n01, l0, l1, n23, l2, l3 = ws
    norms = ht.local_component_norms(ws, tree)
    np.testing.assert_allclose(norms[0], jnp.abs(root[:, 0]) * jnp.linalg.norm(n01, axis=0)
                               * jnp.linalg.norm(n23, axis=0), rtol=1e-13)
    np.testing.assert_allclose(norms[1], jnp.linalg.norm(n01, axis=1)
                               * jnp.linalg.norm(l0, axis=0) * jnp.linalg.norm(l1, axis=0),
                               rtol=1e-13)


@pytest.mark.parametrize("tree, match", [
    ((0, 1, 1), "cover the modes"),
    ((0, (1,)), "at least two children"),
    (3, "tuple of subtrees"),
    ((0, "1"), "mode indices"),
])
def test_bad_trees_are_refused_naming_tree(tree, match):
    with pytest.raises((ValueError, TypeError), match=match) as err:
        H.mode_tree(tree)
    assert "`tree`" in str(err.value)


def test_mismatched_widths_are_refused_naming_the_weight():
    tree = ((0, 1), (2, 3))
    ws = list(weights(tree, (3, 2)))
    ws[1] = jnp.ones((2, 4))  # node (0, 1) must have 3 columns (the root's width)
    with pytest.raises(ValueError, match=r"`ws0\[1\]`.*3 columns"):
        H.ht_weights(ws, tree, True, "ws0")
    with pytest.raises(ValueError, match="7 weight matrices"):
        H.ht_weights(ws[:-1], tree, True, "ws0")
    ws = list(weights(tree, (3, 2)))
    ws[2] = ws[2].astype(jnp.complex128)
    with pytest.raises(TypeError, match=r"ws0\[2\]"):
        H.ht_weights(ws, tree, True, "ws0")


def test_init_refuses_bad_arguments():
    with pytest.raises(ValueError, match="`shape`"):
        ht.balanced(jax.random.PRNGKey(0), (4,), 2, 0.1)
    with pytest.raises(ValueError, match="`scale`"):
        ht.balanced(jax.random.PRNGKey(0), (4, 4), 2, -1.0)
    with pytest.raises(ValueError, match="`widths`"):
        ht.balanced(jax.random.PRNGKey(0), (4, 4, 4, 4), (3,), 0.1)
