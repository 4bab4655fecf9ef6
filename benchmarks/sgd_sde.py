"""Wall time of the SGD stochastic modified equation over B Brownian paths, against B
SGD runs, each set vmapped over keys in one jitted program.

Problem: matrix sensing (eq. 9), `--size` x `--size` (5) rank-1 ground truth, `--m` (40)
Gaussian measurements (`lf.problems.random_matrix_sensing` with key 0), depth `--depth`
(2), balanced init of end-to-end norm 0.2 (key 1), float64. SGD: step `--lr` (0.1),
batch `--batch-size` (4) drawn without replacement, `t1 / lr` steps to `--t1` (8.0: 80
steps), saved every `steps // 40` steps. SDE: `lf.sgd_sde` with the same `lr` and batch
size, Euler-Maruyama, saved at the SGD save times, drift "flow" (weak order 1) and
"modified" (weak order 2), at the default `dt0 = lr / 4` (4 SDE steps per SGD step, each
evaluating all `m` per-sample gradients) and at `dt0 = lr` (one step per SGD step).
B (`--paths`, default 100,1000) keys from `jax.random.split(PRNGKey(2), B)`.

Columns: compile s is the first call minus the steady call; run ms the median of
`--repeats` (3) warm calls with `jax.block_until_ready`, or one warm call where that
call took over `--long` seconds (3: the SDE rows at large B, which keeps the default
run near two minutes on a 2-core CPU); calls the number of warm calls timed;
ms/path run ms over B; ratio the run time over the SGD baseline's at the same B, in
this process; final loss mean and sd over the B runs (the full loss at t1). The row
"SGD loop" (for reference) runs the B SGD runs one after another, a Python loop over
keys calling one jitted single-key run (warmed first: no compile time); it runs only
where its estimate (B times a warm single run) is under `--loop-budget` seconds (30),
and once, not `--repeats` times, where that estimate is over `--long`.

Usage: python benchmarks/sgd_sde.py [--paths 100,1000] [--repeats 3] [--long 3]
       [--size 5] [--m 40] [--depth 2] [--lr 0.1] [--batch-size 4] [--t1 8.0]
       [--loop-budget 30]
"""

import argparse
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp

import lnn_flow as lf


def timed(fn, repeats, long):
    """(result, compile s, median run s, warm calls): compile is the first call minus
    the steady one; `repeats` warm calls, or one where that one took over `long` s."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    runs = []
    while len(runs) < repeats and not (runs and runs[0] > long):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - start)
    run = statistics.median(runs)
    return out, first - run, run, len(runs)


def row(method, B, compile_s, run, calls, base, final_losses):
    final_losses = jnp.asarray(final_losses)
    compile_s = "-" if compile_s is None else f"{compile_s:.2f}"
    print(f"| {method:<22} | {B:>5} | {compile_s:>9} | {run * 1e3:>9.1f} | {calls:>5} | "
          f"{run * 1e3 / B:>8.3f} | {run / base:>6.2f} | "
          f"{float(final_losses.mean()):>10.4e} | {float(final_losses.std()):>9.2e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=str, default="100,1000",
                        help="comma list of B (100,1000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=5)
    parser.add_argument("--m", type=int, default=40, help="measurements (40)")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--t1", type=float, default=8.0)
    parser.add_argument("--loop-budget", type=float, default=30.0,
                        help="seconds the SGD loop row may take (estimate), 30")
    parser.add_argument("--long", type=float, default=3.0,
                        help="time one warm call, not --repeats, where it takes "
                             "over this many seconds (3)")
    args = parser.parse_args()
    paths = [int(p) for p in args.paths.split(",") if p.strip()]
    lr, b, t1 = args.lr, args.batch_size, args.t1
    steps = round(t1 / lr)
    save_every = max(1, steps // 40)

    loss, _ = lf.problems.random_matrix_sensing(
        jax.random.PRNGKey(0), (args.size, args.size), 1, args.m)
    ws0 = lf.init.balanced(jax.random.PRNGKey(1), (args.size,) * (args.depth + 1), 0.2)
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
    print(f"matrix sensing {args.size}x{args.size}, rank 1, m = {args.m}, depth "
          f"{args.depth}, lr {lr:g}, batch {b}, t1 {t1:g} ({steps} SGD steps), "
          f"repeats {args.repeats}, initial loss {float(loss(lf.end_to_end(ws0))):.4e}")

    def sgd_one(k):
        return lf.stochastic_gradient_descent(
            loss, ws0, lr, steps, batch_size=b, key=k, save_every=save_every)

    sgd_batch = eqx.filter_jit(jax.vmap(sgd_one))
    sgd_single = eqx.filter_jit(sgd_one)

    def sde_batch(ts, drift, dt0):
        return eqx.filter_jit(jax.vmap(lambda k: lf.sgd_sde(
            loss, ws0, t1, ts, lr=lr, batch_size=b, key=k, drift=drift, dt0=dt0)))

    print()
    print(f"| {'method':<22} | {'B':>5} | {'compile s':>9} | {'run ms':>9} | "
          f"{'calls':>5} | {'ms/path':>8} | {'ratio':>6} | {'loss mean':>10} | "
          f"{'loss sd':>9} |")
    print(f"|{'-' * 24}|{'-' * 7}|{'-' * 11}|{'-' * 11}|{'-' * 7}|{'-' * 10}|{'-' * 8}|"
          f"{'-' * 12}|{'-' * 11}|")
    sde_cases = [("flow", None), ("modified", None), ("flow", lr), ("modified", lr)]
    sde_fns = {}
    for B in paths:
        keys = jax.random.split(jax.random.PRNGKey(2), B)
        sgd, compile_s, base, calls = timed(lambda: sgd_batch(keys), args.repeats,
                                            args.long)
        row("SGD vmap (baseline)", B, compile_s, base, calls, base, sgd.loss_final)
        ts = sgd.ts[0]
        for drift, dt0 in sde_cases:
            # One jitted function per case, reused across B (new B recompiles anyway).
            if (drift, dt0) not in sde_fns:
                sde_fns[drift, dt0] = sde_batch(ts, drift, dt0)
            fn = sde_fns[drift, dt0]
            sol, compile_s, run, calls = timed(lambda: fn(keys), args.repeats, args.long)
            assert bool(jnp.all(sol.success)), "an SDE path failed"
            label = f"SDE {drift}, dt0 " + ("lr/4" if dt0 is None else "lr")
            row(label, B, compile_s, run, calls, base, sol.loss_final)

        # Reference: B single SGD runs, one after another.
        _, _, single, _ = timed(lambda: sgd_single(keys[0]), args.repeats, args.long)
        if B * single > args.loop_budget:
            print(f"| {'SGD loop (skipped)':<22} | {B:>5} | {'':>9} | "
                  f"{B * single * 1e3:>9.0f} | {'':>5} | {'':>8} | {'':>6} | "
                  f"{'(estimate)':>10} | {'':>9} |")
            continue
        finals, key_list = [], list(keys)

        def loop():
            finals.clear()
            for k in key_list:
                finals.append(sgd_single(k).loss_final)
            return finals

        runs = []
        for _ in range(1 if B * single > args.long else args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(loop())
            runs.append(time.perf_counter() - start)
        row("SGD loop (reference)", B, None, statistics.median(runs), len(runs), base,
            finals)


if __name__ == "__main__":
    main()
