"""`lnn_flow._core._config`: the process-wide settings of `import lnn_flow` (64-bit JAX, one
OpenBLAS thread for jaxlib's CPU LAPACK) and their opt-outs. Each case runs in a fresh
interpreter, since the settings are applied at import."""

import os
import subprocess
import sys

import pytest

import lnn_flow
from lnn_flow._core import _config

REPORT = """
import jax, lnn_flow, scipy.linalg, threadpoolctl
{after}
print(([i["num_threads"] for i in threadpoolctl.threadpool_info()
        if i["internal_api"] == "openblas" and "scipy.libs" in i["filepath"]],
       bool(jax.config.jax_enable_x64)))
"""
SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "LNN_FLOW_LAPACK_THREADS",
            "LNN_FLOW_NO_X64", "JAX_ENABLE_X64")
wired = pytest.mark.skipif(
    not hasattr(lnn_flow, "configure"),
    reason="`lnn_flow/__init__.py` does not yet call `_config.configure_from_environment`",
)


def imported(after="", **env):
    """(scipy OpenBLAS thread counts, x64) in a fresh `import lnn_flow`."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    done = subprocess.run([sys.executable, "-c", REPORT.format(after=after)],
                          env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    threads, x64 = eval(done.stdout.strip().splitlines()[-1])
    return threads, x64


def test_import_sets_x64_and_one_lapack_thread_unless_the_user_chose():
    assert imported() == ([1], True)
    assert imported(LNN_FLOW_LAPACK_THREADS="2")[0] == [2]
    # OpenBLAS reads OPENBLAS_NUM_THREADS itself; lnn_flow leaves it alone.
    assert imported(OPENBLAS_NUM_THREADS="2")[0] == [2]
    assert imported(OPENBLAS_NUM_THREADS="2", LNN_FLOW_LAPACK_THREADS="keep")[0] == [2]


@wired
def test_opt_outs_by_environment_and_by_configure():
    assert imported(LNN_FLOW_NO_X64="1") == ([1], False)
    assert imported("lnn_flow.configure(x64=False, lapack_threads=3)") == ([3], False)
    assert imported("lnn_flow.configure(x64=True)", LNN_FLOW_NO_X64="1")[1] is True


def test_thread_limit_from_environment(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert _config.limit_from_environment() == 1
    monkeypatch.setenv("LNN_FLOW_LAPACK_THREADS", " 4 ")
    assert _config.limit_from_environment() == 4
    monkeypatch.setenv("LNN_FLOW_LAPACK_THREADS", "keep")
    assert _config.limit_from_environment() == "keep"
    monkeypatch.setenv("LNN_FLOW_LAPACK_THREADS", "0")
    with pytest.raises(ValueError, match=r"\$LNN_FLOW_LAPACK_THREADS` must be a positive"):
        _config.limit_from_environment()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _config.limit_from_environment() == "keep"


def test_configure_refuses_bad_values_and_leaves_none_alone():
    assert _config.configure() == {"x64": None, "lapack_threads": None}
    assert _config.configure(lapack_threads="keep") == {"x64": None, "lapack_threads": None}
    with pytest.raises(TypeError, match="`x64` must be True, False or None"):
        _config.configure(x64=1)
    for bad in (0, -1, 2.5, True, "two"):
        with pytest.raises(ValueError, match="`lapack_threads` must be a positive integer"):
            _config.configure(lapack_threads=bad)


def test_float32_mode_runs_the_demo_without_float64_warnings(tmp_path):
    """Issue 26: with `LNN_FLOW_NO_X64=1` the demo stopped at its float64 tolerances
    ("pass rtol >= 1.2e-07", with no --rtol to pass) and every `lf.problems` /
    `lf.init` call warned that float64 is not available. Now the defaults ask for the
    float the process has and the demo picks tolerances float32 resolves."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    done = subprocess.run(
        [sys.executable, "-m", "lnn_flow._command._cli", "demo", "--dim", "4",
         "--num-measurements", "10", "--t1", "5", "--out", str(tmp_path / "d")],
        env={**clean, "LNN_FLOW_NO_X64": "1"}, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not available" not in done.stderr, done.stderr[-2000:]
    assert "float32, rtol 1e-05" in done.stdout
