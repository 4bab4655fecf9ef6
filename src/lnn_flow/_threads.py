"""One thread for the LAPACK behind JAX's CPU `svd`/`eigh`.

On CPU, jaxlib calls LAPACK from SciPy's bundled OpenBLAS. For the matrices of this
package (d <= a few hundred) its threads buy little on an idle machine and, when another
process keeps a core busy, can make an SVD many times slower (spinning threads wait on
each other). `python benchmarks/lapack_threads.py` times one thread against several,
idle and next to a busy process, on the machine at hand.
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
