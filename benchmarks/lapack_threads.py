"""JAX's CPU SVD with SciPy's OpenBLAS on one thread vs several, idle and with a busy
neighbour (the case `lnn_flow.configure(lapack_threads=1)` is for).

For d in `--dims`: the median wall time of `jnp.linalg.svd` of a d x d float64 matrix
(jitted, after compilation, `--repeats` calls) with the OpenBLAS behind jaxlib limited
to 1 thread and to `--threads` threads (threadpoolctl), first as the machine is ("idle":
no process added; check the load yourself), then while `--busy` other processes spin on
a core each. Takes well under a minute.
Usage: python benchmarks/lapack_threads.py [--dims 50 100] [--threads 2] [--busy 1]
"""

import argparse
import multiprocessing
import os
import statistics
import time

os.environ.setdefault("LNN_FLOW_LAPACK_THREADS", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import scipy.linalg  # noqa: E402, F401  (loads the OpenBLAS that jaxlib calls)
from threadpoolctl import threadpool_limits  # noqa: E402

import lnn_flow  # noqa: E402, F401  (float64)


def spin(stop):
    while not stop.is_set():
        pass


def median_ms(fn, x, repeats):
    jax.block_until_ready(fn(x))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure(args, svd):
    row = {}
    for d in args.dims:
        x = jax.random.normal(jax.random.PRNGKey(d), (d, d))
        for threads in (1, args.threads):
            with threadpool_limits(limits=threads, user_api="blas"):
                row[d, threads] = median_ms(svd, x, args.repeats)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--busy", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    svd = jax.jit(lambda x: jnp.linalg.svd(x, full_matrices=False))
    print(f"cores: {os.cpu_count()}, backend: {jax.default_backend()}")
    idle = measure(args, svd)
    context = multiprocessing.get_context("spawn")  # JAX's threads forbid fork
    stop = context.Event()
    workers = [context.Process(target=spin, args=(stop,)) for _ in range(args.busy)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2.0)  # let the spawned interpreters start spinning
        busy = measure(args, svd)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    print(f"{'d':>5} {'machine':>14} {'1 thread ms':>12} {f'{args.threads} threads ms':>13}"
          f" {'ratio':>7}")
    for label, row in (("idle", idle), (f"{args.busy} busy", busy)):
        for d in args.dims:
            one, many = row[d, 1], row[d, args.threads]
            print(f"{d:>5} {label:>14} {one:>12.3f} {many:>13.3f} {many / one:>7.1f}")


if __name__ == "__main__":
    main()
