"""Steps, vector-field evaluations and wall time of the CP and hierarchical tensor flows.

The CP flow (Section 5), and the hierarchical tensor factorization flow on the same
problems (below).

Tensor completion of a random CP-rank-`--rank` (2) ground truth
(`lf.problems.random_tensor_completion`) of shape 10^3 and 6^4 from half its entries,
R = rank + 2 components from a balanced init of component norm `--scale` (1e-3), Tsit5
at the default rtol 1e-8, atol 1e-10 (`lnn_flow._solving._options.DEFAULTS`), float64, stopped at
the loss threshold `1e-6 * l(0)` (time capped at `1e6 m`). The order-2 line is matrix
completion (30 x 30, rank 2, half the entries) by the CP flow with factors (A_1, A_2),
next to `lf.factor_flow` at depth 2 on the same trajectory (W_1 = A_2^T, W_2 = A_1);
the ratio line is CP over factor flow, in this process.

On the order-3 and order-4 problems, two rows of `lf.hierarchical.flow` (same solver,
tolerances, threshold and cap) follow the CP row: "HT binary" on the balanced binary
mode tree (`binary_tree(N)`: ((0, 1), 2) and ((0, 1), (2, 3))), with the root's output
layer, every internal node of width R, from `hierarchical.balanced` with every weight
matrix of Frobenius norm `sqrt(R) scale^(1/3)`, so that every local component (K = 3
vectors) starts at norm `--scale` like the CP components (the end-to-end tensor starts
far smaller than CP's: a different trajectory, other steps and t_final); "HT 1-level"
on the one-level tree without output layer from the CP row's own factors, which is the
CP flow exactly (the same trajectory: its wall time over CP's is the cost of the
generic tree product). Two ratio lines give both rows' wall time over the CP row's (and,
for the binary tree, the ratio of time per vector-field evaluation), in this process.
Compile time (first call minus one run) is reported apart; run times are the median
of `--repeats` calls.
Usage: python benchmarks/tensor.py [--repeats 5] [--scale 1e-3] [--rank 2]
"""

import argparse
import math

import jax
import jax.numpy as jnp
from flows import timed  # benchmarks/flows.py: (result, compile s, median run s)

import lnn_flow as lf


def report(label, flow, sol, compile_s, run):
    evals = int(sol.stats.num_vector_field_evals)
    print(
        f"{label:>10} {flow:>12} {compile_s:>9.2f} {run * 1e3:>8.1f} "
        f"{int(sol.stats.num_steps):>6} {evals:>8} {run / evals * 1e6:>8.1f} "
        f"{float(sol.t_final):>9.3g} {float(sol.loss_final):>10.2e}"
        + ("" if bool(sol.success & sol.stopped) else "  NOT FINISHED: " + sol.message)
    )
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1e-3, help="init norm (1e-3)")
    parser.add_argument("--rank", type=int, default=2)
    args = parser.parse_args()
    R = args.rank + 2
    print(f"backend: {jax.default_backend()}, rank {args.rank}, R = {R}, init scale "
          f"{args.scale:g}, repeats {args.repeats}")
    print(f"{'problem':>10} {'flow':>12} {'compile s':>9} {'run ms':>8} {'steps':>6} "
          f"{'vf evals':>8} {'us/eval':>8} {'t_final':>9} {'final loss':>10}")
    key_p, key_i = jax.random.split(jax.random.PRNGKey(0))
    for shape in ((10, 10, 10), (6, 6, 6, 6), (30, 30)):
        m = math.prod(shape) // 2
        label = "x".join(map(str, shape))
        if len(shape) == 2:
            loss, _ = lf.problems.random_matrix_completion(key_p, shape, args.rank, m)
        else:
            loss, _ = lf.problems.random_tensor_completion(key_p, shape, args.rank, m)
        fs0 = lf.tensor.balanced(key_i, shape, R, args.scale)
        options = dict(loss_threshold=1e-6 * float(loss(jnp.zeros(shape))),
                       max_steps=100_000)
        t1 = 1e6 * m
        sol, compile_s, cp = timed(lambda: lf.tensor.flow(loss, fs0, t1, **options),
                                   args.repeats)
        report(label, f"CP order {len(shape)}", sol, compile_s, cp)
        cp_evals = int(sol.stats.num_vector_field_evals)
        if len(shape) > 2:
            tree = lf.hierarchical.binary_tree(len(shape))
            ws0 = lf.hierarchical.balanced(key_i, shape, R,
                                           math.sqrt(R) * args.scale ** (1 / 3), tree=tree)
            sol, compile_s, binary = timed(
                lambda: lf.hierarchical.flow(loss, ws0, t1, tree=tree, **options),
                args.repeats)
            report(label, "HT binary", sol, compile_s, binary)
            per_eval = (binary / int(sol.stats.num_vector_field_evals)) / (cp / cp_evals)
            one_level = tuple(range(len(shape)))
            sol, compile_s, flat = timed(
                lambda: lf.hierarchical.flow(loss, fs0, t1, tree=one_level, output=False,
                                             **options),
                args.repeats)
            report(label, "HT 1-level", sol, compile_s, flat)
            print(f"{label:>10} {'ratio':>12} {'':>9} {binary / cp:>8.2f}   (HT binary / CP "
                  f"wall time; {per_eval:.2f} per evaluation)")
            print(f"{label:>10} {'ratio':>12} {'':>9} {flat / cp:>8.2f}   (HT 1-level / CP "
                  "wall time, the same trajectory)")
        if len(shape) == 2:
            ws0 = (fs0[1].T, fs0[0])
            sol, compile_s, net = timed(lambda: lf.factor_flow(loss, ws0, t1, **options),
                                        args.repeats)
            report(label, "factor n=2", sol, compile_s, net)
            print(f"{label:>10} {'ratio':>12} {'':>9} {cp / net:>8.2f}   (CP / factor "
                  "flow wall time)")


if __name__ == "__main__":
    main()
