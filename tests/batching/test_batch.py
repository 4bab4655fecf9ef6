"""`solve_batch`: many initializations at once, per member equal to solving it alone,
sharded over 8 CPU devices and over 2 processes (jax.distributed) with the same result.

Device counts are fixed when JAX starts, so the multi-device checks run in
subprocesses with their own `XLA_FLAGS`.
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SAME_SIZE, member, spread_problem, trajectory_tolerance

import lnn_flow as lf

ROOT = Path(__file__).resolve().parents[2]
DIMS = (4, 5, 3, 4)
B = 5
T1 = 8.0
TS = jnp.linspace(0.0, T1, 5)


@pytest.fixture(scope="module")
def problem():
    # Scales spread over two decades: members take different numbers of steps.
    return spread_problem(DIMS, B, -2, 0)


@pytest.fixture(scope="module")
def factor_batch(problem):
    loss, ws0 = problem
    return lf.solve_batch("factor", loss, ws0, T1, TS)


def test_members_equal_solving_each_alone(problem, factor_batch):
    loss, ws0 = problem
    sol = factor_batch
    assert sol.end_to_end.shape == (B, TS.shape[0], DIMS[-1], DIMS[0])
    assert bool(sol.success.all())
    steps = np.asarray(sol.stats.num_steps)
    assert len(set(steps.tolist())) > 1  # members really differ in length
    for i in range(B):
        alone = lf.factor_flow(loss, member(ws0, i), T1, TS)
        # Same program per member; only XLA's batched kernels may round differently
        # (a few ulp per step, seen <= 1e-15), far inside 1e-12 on entries of order 1.
        np.testing.assert_allclose(sol.end_to_end[i], alone.end_to_end, rtol=0,
                                   atol=1e-12)
        assert steps[i] == int(alone.stats.num_steps)  # same accepted/rejected path


def test_one_device_is_plain_vmap(problem, factor_batch):
    """The default on one device is jit(vmap(solve)): bit-identical to it."""
    loss, ws0 = problem
    direct = jax.vmap(lambda ws: lf.factor_flow(loss, ws, T1, TS))(ws0)
    for a, b in zip(jax.tree_util.tree_leaves(factor_batch),
                    jax.tree_util.tree_leaves(direct)):
        assert np.array_equal(a, b, equal_nan=True)


def test_end_to_end_and_descent_methods(problem):
    loss, ws0 = problem
    W0 = jax.vmap(lf.end_to_end)(ws0)
    e2e = lf.solve_batch("end_to_end", loss, W0, 3, T1, TS)
    desc = lf.solve_batch("descent", loss, ws0, 0.05, 40, save_every=10)
    assert e2e.factors is None and e2e.end_to_end.shape == (B, 5, DIMS[-1], DIMS[0])
    assert desc.loss.shape == (B, 5)
    i = 2
    alone = lf.end_to_end_flow(loss, W0[i], 3, T1, TS)
    # The field's SVD rounds differently batched and alone, and a flow escaping a
    # saddle amplifies rounding: both solves are within their own tolerance (default
    # rtol 1e-8, atol <= 1e-10) of the flow, so they agree to twice that.
    scale = float(np.abs(alone.end_to_end).max())
    tol = 2 * trajectory_tolerance(alone.stats.num_steps, scale, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(e2e.end_to_end[i], alone.end_to_end, rtol=0, atol=tol)
    alone = lf.gradient_descent(loss, member(ws0, i), 0.05, 40, save_every=10)
    # Descent is a fixed sequence of 40 steps: batched rounding only, as above.
    np.testing.assert_allclose(desc.loss[i], alone.loss, rtol=1e-12, atol=0)


def test_any_callable_is_a_method(problem):
    loss, ws0 = problem
    calls = []

    def final_loss(loss, ws, t1):
        calls.append(1)  # traced once for the whole batch
        return lf.factor_flow(loss, ws, t1).loss_final

    out = lf.solve_batch(final_loss, loss, ws0, T1)
    assert out.shape == (B,) and len(calls) == 1


def test_new_values_do_not_recompile(problem, factor_batch):
    """Floats (times, tolerances) and arrays are traced; only shapes, ints and the set
    of arguments given key the compiled program. Counted with public behaviour only:
    the loss's Python body runs only while JAX traces it."""
    loss, ws0 = problem
    traces = []

    def counting_loss(W):  # one function object: the same static argument each call
        traces.append(1)
        return loss(W)

    lf.solve_batch("factor", counting_loss, ws0, T1, TS, rtol=1e-8)
    first = len(traces)
    assert first > 0
    lf.solve_batch("factor", counting_loss, ws0, T1 / 2, TS / 2, rtol=1e-7)
    doubled = jax.tree_util.tree_map(lambda w: 2 * w, ws0)
    lf.solve_batch("factor", counting_loss, doubled, T1, TS, rtol=1e-8)
    assert len(traces) == first


def test_bad_input_names_the_argument(problem):
    loss, ws0 = problem
    with pytest.raises(ValueError, match="`method` must be one of"):
        lf.solve_batch("newton", loss, ws0, T1)
    ragged = (ws0[0], ws0[1][:2], ws0[2])
    with pytest.raises(ValueError, match="`init` must have one leading batch axis"):
        lf.solve_batch("factor", loss, ragged, T1)
    with pytest.raises(ValueError, match="`chunk_size` must be a positive integer, None or 'auto'"):
        lf.solve_batch("factor", loss, ws0, T1, chunk_size=0)
    with pytest.raises(TypeError, match="`devices`"):
        lf.solve_batch("factor", loss, ws0, T1, devices=["cpu:0"])
    # Floats are traced (no recompiles), but concrete ones are checked on the host
    # first: a bad value is a one-line ValueError, not a runtime error from the solve.
    with pytest.raises(ValueError, match="`rtol` must be >= 0"):
        lf.solve_batch("factor", loss, ws0, T1, rtol=-1.0)


def run_python(code, env_extra, timeout=240):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(env_extra)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


SHARDED = """
import jax, jax.numpy as jnp, numpy as np, json
import lnn_flow as lf
assert jax.device_count() == 8
loss, _ = lf.problems.random_matrix_sensing(jax.random.PRNGKey(0), (4, 4), 2, 12)
keys = jax.random.split(jax.random.PRNGKey(3), 11)   # 11 seeds: padded to 16
ws0 = jax.vmap(lambda k, s: lf.init.balanced(k, (4, 5, 3, 4), s))(
    keys, jnp.logspace(-2, 0, 11))
one = jax.devices()[:1]
report = {}
W0 = jax.vmap(lf.end_to_end)(ws0)
cases = {  # name: (method, args, keyword arguments of the sharded call only)
    "factor": ("factor", (ws0, 8.0), {}),
    "end_to_end": ("end_to_end", (W0, 3, 8.0), {}),
    "descent": ("descent", (ws0, 0.05, 40), {}),
    "chunked": ("factor", (ws0, 8.0), {"chunk_size": 1}),
    # A loss-threshold stop takes the Auto-axes fallback (see lnn_flow._batching._batch).
    "threshold": ("factor", (ws0, 8.0, None), {"loss_threshold": 0.05}),
}
for name, (method, args, extra) in cases.items():
    sharded = lf.solve_batch(method, loss, *args, **extra)  # over 8 devices
    extra.pop("chunk_size", None)
    single = lf.solve_batch(method, loss, *args, **extra, devices=one)  # all at once
    leaves = list(zip(jax.tree_util.tree_leaves(sharded), jax.tree_util.tree_leaves(single)))
    floats = [(a, b) for a, b in leaves if np.issubdtype(np.asarray(a).dtype, np.floating)]
    report[name] = {
        "bit_identical": all(np.array_equal(a, b, equal_nan=True) for a, b in leaves),
        "max_diff": max(float(np.nanmax(np.abs(np.asarray(a) - np.asarray(b)), initial=0))
                        for a, b in floats),
        "same_nan": all(np.array_equal(np.isnan(a), np.isnan(b)) for a, b in floats),
        "same_ints": all(np.array_equal(a, b) for a, b in leaves
                         if not np.issubdtype(np.asarray(a).dtype, np.floating)),
        "shape": list(sharded.loss.shape),
        "steps": np.asarray(sharded.stats.num_steps).tolist(),
        "devices": len(sharded.loss.sharding.device_set),
        "stopped": int(np.sum(sharded.stopped)),
        "t_diff": float(np.max(np.abs(sharded.t_final - single.t_final))),
    }
    if sharded.factors_final is not None:  # max |d/dt| of factors and product (eq. 2)
        def speeds(ws):
            v = lf.factor_vector_field(loss, ws)
            return (*v, jax.jvp(lf.end_to_end, (ws,), (v,))[1])
        report[name]["speed"] = max(float(np.max(np.abs(x)))
                                    for x in jax.vmap(speeds)(sharded.factors_final))
# Refilled slots on each device (2 slots per device, rounds of 8 steps) against the
# plain batch on one device: the same solves up to where rounds end.
# Against a reference 1000x tighter (the same program as `plain`: tolerances traced).
pooled = lf.solve_pool("factor", loss, ws0, 8.0, slots=2, round_steps=8)
stats = jax.tree_util.tree_map(lambda x: x[0], pooled.pool)  # totals, per member
plain = lf.solve_batch("factor", loss, ws0, 8.0, devices=one, rtol=1e-8, atol=1e-10)
ref = lf.solve_batch("factor", loss, ws0, 8.0, devices=one, rtol=1e-11, atol=1e-13)
error = lambda sol: np.abs(sol.end_to_end - ref.end_to_end).max(axis=(1, 2, 3))
pool = {
    "pool_error": error(pooled).tolist(),
    "plain_error": error(plain).tolist(),
    "devices": len(pooled.loss.sharding.device_set),
    "success": bool(np.all(pooled.success)),
    "counted": int(stats.member_steps) >= int(np.sum(pooled.stats.num_steps)),
}
# The end-to-end flow's own error per member, against a reference 1000x tighter.
e2e_ref = lf.solve_batch("end_to_end", loss, W0, 3, 8.0, devices=one, rtol=1e-11,
                         atol=1e-13)
e2e = lf.solve_batch("end_to_end", loss, W0, 3, 8.0, devices=one)
e2e_sharded = lf.solve_batch("end_to_end", loss, W0, 3, 8.0)
per_member = lambda a, b: np.abs(a.end_to_end - b.end_to_end).max(axis=(1, 2, 3))
report["end_to_end"]["member_error"] = per_member(e2e, e2e_ref).tolist()
report["end_to_end"]["member_diff"] = per_member(e2e_sharded, e2e).tolist()
print(json.dumps(report))
print(json.dumps(pool))
"""


@pytest.mark.slow  # ~45 s: a subprocess with 8 host devices compiles every method again
def test_sharded_over_8_cpu_devices_equals_one_device():
    out = run_python(SHARDED, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    report = json.loads(out.strip().splitlines()[-2])
    pool = json.loads(out.strip().splitlines()[-1])
    # Seeds from norm 1e-2 escape the saddle at the origin, where errors grow, so
    # conftest's rule is no bound (see its docstring): each pooled member must be as
    # accurate as the plain solve of it, against a reference 1000x tighter; their step
    # paths differ where rounds end (errors of the same size, `SAME_SIZE`).
    assert pool["success"] and pool["counted"] and pool["devices"] == 8
    pool_error, plain_error = np.array(pool["pool_error"]), np.array(pool["plain_error"])
    assert (pool_error <= SAME_SIZE * plain_error).all(), pool
    for name, r in report.items():
        # Each device runs the same vmapped program on its slice, so every member takes
        # the same steps (integer stats, result codes equal) and only XLA's kernels for
        # a batch of 2 vs 11 may round differently: O(eps) per operation, ~100
        # operations per step, <= 130 steps, |y| <= 2: 130 * 100 * 2 * 2.2e-16 = 6e-12.
        # (Seen: 8e-15 factor flow, 2e-16 descent.)
        assert r["same_nan"], name
        if name != "end_to_end":
            assert r["same_ints"], name
        if name == "threshold":
            # The stop is located by bisection to a bracket of rtol |t| (default rtol
            # 1e-8, t <= 8; lnn_flow._solving._events._Crossing): rounding can flip one
            # bisection decision next to the root, so the stop times may differ by
            # up to that bracket (`t_final` is a leaf too), and the states by it
            # times their speed there.
            bracket = 1e-8 * 8.0
            assert r["t_diff"] <= bracket, (name, r)
            assert r["max_diff"] <= 1e-11 + bracket * max(1.0, r["speed"]), (name, r)
            continue
        if name == "end_to_end":
            # Its SVD-based field is more sensitive: on the members escaping the
            # saddle at the origin the same rounding differences grow, as any
            # perturbation does (conftest's docstring), and can flip one accept/reject
            # decision of the PI controller (whose step depends on the last two error
            # estimates): then the two solves take different step paths (different
            # step counts), each within its own tolerance of the flow. Sharding must
            # still change nothing beyond that: each member's difference stays within
            # SAME_SIZE of that member's own solver error.
            diff, error = np.array(r["member_diff"]), np.array(r["member_error"])
            assert (diff <= SAME_SIZE * error).all(), (name, r)
        else:
            assert r["max_diff"] <= 1e-11, name
        assert r["shape"][0] == 11, name  # padding (to 16) trimmed
        assert r["devices"] == 8, name  # the result lives on all 8: it ran sharded
    assert len(set(report["factor"]["steps"])) > 1
    assert report["threshold"]["stopped"] > 0  # the event really fired


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def recipe_blocks():
    text = (ROOT / "docs" / "distributed.md").read_text()
    script = re.search(r"```python\n(# distributed_sweep\.py.*?)```", text, re.S)
    launch = re.search(r"```bash\n(export XLA_FLAGS.*?)```", text, re.S)
    return script.group(1), launch.group(1)


@pytest.mark.slow  # two JAX processes start and compile: ~35 s here
def test_distributed_recipe_on_localhost(tmp_path):
    """docs/distributed.md's script and launch lines, run as written (port, study and
    output swapped for a free port and a small study), equal a one-process sweep."""
    script, launch = recipe_blocks()
    (tmp_path / "distributed_sweep.py").write_text(script)
    study = tmp_path / "tiny.toml"
    study.write_text(textwrap.dedent("""
        name = "tiny"
        seeds = 5
        [fixed]
        d_in = 4
        d_out = 4
        depth = 2
        num_measurements = 12
        t1 = 8.0
        num_saves = 3
        [grid]
        init_scale = [0.01, 0.1]
    """))
    launch = (launch.replace("12321", str(free_port()))
              .replace("studies/example_sweep.toml", str(study))
              .replace("results/dist", str(tmp_path / "dist")))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run(["bash", "-ec", launch], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "process 0/2: 2 local of 4 devices" in done.stdout
    assert "wrote 2 groups" in done.stdout
    distributed = lf.load_sweep(tmp_path / "dist")
    alone = lf.run_sweep(study, tmp_path / "alone", progress=False)
    assert len(distributed) == len(alone) == 2
    for a, b in zip(distributed, alone):
        assert a.config == b.config
        for name in b.arrays:
            # 5 seeds over 4 devices (padded to 8) vs 5 on one: the same steps, so
            # kernel rounding only (bound as in the 8-device test above).
            if np.issubdtype(b[name].dtype, np.floating):
                np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-11,
                                           err_msg=name)
            else:
                assert np.array_equal(a[name], b[name]), name
