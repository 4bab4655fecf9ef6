"""One thread for the LAPACK behind JAX's CPU `svd`/`eigh`.

On CPU, jaxlib calls LAPACK from SciPy's bundled OpenBLAS. For the matrices of this
package (d <= a few hundred) its threads buy nothing on an idle machine and cost 50-280x
when another process keeps a core busy (spinning threads wait on each other): measured
on 2 cores with one busy, a 50 x 50 SVD took 48 ms with 2 threads and 0.3 ms with one,
100 x 100 276 ms against 1.0 ms; idle, one thread is as fast (1.0 vs 1.2 ms at d = 100).
XLA's own kernels (matmuls, the solver loop) do not use OpenBLAS and are not affected.
"""

import os

_USER_SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "LNN_FLOW_LAPACK_THREADS")


def limit_lapack_threads() -> int | None:
    """Limit SciPy's OpenBLAS to one thread (or `$LNN_FLOW_LAPACK_THREADS`); leave it
    alone when the user set `OPENBLAS_NUM_THREADS` or `OMP_NUM_THREADS`. Returns the
    limit applied, or None."""
    if any(name in os.environ for name in _USER_SETTINGS[:2]):
        return None
    limit = int(os.environ.get("LNN_FLOW_LAPACK_THREADS", "1"))
    try:
        import scipy.linalg  # noqa: F401  (loads the OpenBLAS that jaxlib calls)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    libraries = ThreadpoolController().select(internal_api="openblas")
    scipy_blas = [
        lib for lib in libraries.lib_controllers if "scipy.libs" in lib.filepath
        or "scipy" in os.path.basename(os.path.dirname(lib.filepath))
    ]
    for lib in scipy_blas or libraries.lib_controllers:
        lib.set_num_threads(limit)
    return limit
