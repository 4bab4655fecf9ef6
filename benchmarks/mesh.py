"""Why `lf.solve_batch` shards with `shard_map`: one device vs an Auto-axes mesh vs
`shard_map`, on several CPU host devices.

Matrix sensing (eq. 9), d x d rank-2 truth, m = 8 d, factor flow at depth 3 from
`--seeds` balanced inits of norm 1e-3, Tsit5 rtol 1e-8, atol 1e-10, float64, t1 = 60:

- `one device`: `jax.jit(jax.vmap(solve))` on one device;
- `Auto mesh`: the same `jit(vmap(solve))` with the seeds sharded over all devices of an
  Auto-axes mesh (GSPMD partitions the solve's while loop, whose stop test reduces over
  the whole batch);
- `shard_map`: `lf.solve_batch`, each device solving its own slice.

Prints the median run time after compilation (`--repeats` calls) and the largest
difference of each sharded result from the one-device result (0.0: bit-identical).
Sets `--xla_force_host_platform_device_count` itself. Takes about a minute.
Usage: python benchmarks/mesh.py [--devices 8] [--seeds 16] [--d 10] [--repeats 5]
"""

import argparse
import os
import statistics
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if "jax" in sys.modules:
        raise RuntimeError("XLA_FLAGS must be set before JAX starts")
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={args.devices}"
    )
    import jax
    import numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec

    import lnn_flow as lf

    d = args.d
    loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(d), (d, d), 2, 8 * d)
    keys = jax.random.split(jax.random.PRNGKey(1), args.seeds)
    ws0 = jax.vmap(lambda k: lf.init.balanced(k, (d,) * 4, 1e-3))(keys)
    devices = jax.devices()
    solve = jax.jit(jax.vmap(lambda ws: lf.factor_flow(loss, ws, 60.0).end_to_end_final))
    mesh = jax.sharding.Mesh(np.array(devices), ("batch",), axis_types=(AxisType.Auto,))
    sharded = jax.device_put(ws0, NamedSharding(mesh, PartitionSpec("batch")))
    on_one = jax.device_put(ws0, devices[0])
    cases = {
        "one device": lambda: solve(on_one),
        "Auto mesh": lambda: solve(sharded),
        "shard_map": lambda: lf.solve_batch("factor", loss, ws0, 60.0).end_to_end_final,
    }
    print(f"{len(devices)} {devices[0].platform} devices, {args.seeds} seeds, d = {d}, "
          f"depth 3, {os.cpu_count()} cores")
    print(f"{'':>12} {'run s':>8} {'compile s':>9} {'max diff':>9}")
    reference = None
    for name, fn in cases.items():
        start = time.perf_counter()
        out = np.asarray(jax.block_until_ready(fn()))
        first = time.perf_counter() - start
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            runs.append(time.perf_counter() - start)
        run = statistics.median(runs)
        reference = out if reference is None else reference
        diff = float(np.max(np.abs(out - reference)))
        print(f"{name:>12} {run:>8.3f} {first - run:>9.2f} {diff:>9.1e}")


if __name__ == "__main__":
    main()
