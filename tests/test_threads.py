"""`lnn_flow._threads`: importing lnn_flow runs SciPy's OpenBLAS (jaxlib's CPU LAPACK)
on one thread, unless the user chose a thread count."""

import os
import subprocess
import sys

REPORT = """
import lnn_flow, scipy.linalg, threadpoolctl
print([i["num_threads"] for i in threadpoolctl.threadpool_info()
       if i["internal_api"] == "openblas" and "scipy.libs" in i["filepath"]])
"""


def threads(**env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                          "LNN_FLOW_LAPACK_THREADS")}
    done = subprocess.run([sys.executable, "-c", REPORT], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return eval(done.stdout.strip().splitlines()[-1])


def test_lapack_runs_on_one_thread_unless_the_user_chose():
    assert threads() == [1]
    assert threads(LNN_FLOW_LAPACK_THREADS="2") == [2]
    # OpenBLAS reads OPENBLAS_NUM_THREADS itself; lnn_flow leaves it alone.
    assert threads(OPENBLAS_NUM_THREADS="2") == [2]
