"""Process-wide settings that lnn_flow applies on import, and how to opt out.

Unlike diffrax and equinox, lnn_flow changes two process-wide settings when imported,
because its numerics depend on them:

- **64-bit JAX** (`jax_enable_x64`): the tests solve the flows at `rtol = 1e-10`
  (`tests/conftest.py`) and the theory checks compare quantities at rounding level;
  float32 (eps 1.2e-7) can resolve neither.
  Callers still get float32 where they pass float32 arrays.
- **One LAPACK thread** for SciPy's OpenBLAS, which jaxlib calls for CPU `svd`/`eigh`.
  For the matrices of this package (d <= a few hundred) its threads buy little on an
  idle machine and, next to a busy process, can make an SVD many times slower
  (spinning threads wait on each other); `python benchmarks/lapack_threads.py` times
  it on the machine at hand. XLA's own kernels do not use OpenBLAS.

A program that imports lnn_flow into a larger one opts out before the import, with
environment variables:

- `LNN_FLOW_NO_X64=1`: leave `jax_enable_x64` as it is;
- `LNN_FLOW_LAPACK_THREADS=keep`: leave OpenBLAS's threads alone (an integer sets
  that many instead); `OPENBLAS_NUM_THREADS` or `OMP_NUM_THREADS` in the environment
  also leave them alone, as OpenBLAS then reads the user's choice itself;

or after it, with [`lnn_flow.configure`][] (which also undoes the import's choices).
"""

import os

import jax

_USER_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
_KEEP = "keep"


def configure(*, x64: bool | None = None, lapack_threads: int | str | None = None) -> dict:
    """Set lnn_flow's process-wide settings; `None` leaves a setting as it is.

    - `x64`: turn JAX's 64-bit mode on or off (`jax.config.update("jax_enable_x64")`).
      Set it before creating arrays: arrays made under one mode keep their dtype.
    - `lapack_threads`: the number of threads of SciPy's OpenBLAS (jaxlib's CPU
      LAPACK), or `"keep"` to leave them alone.

    **Returns:** what was applied, `{"x64": bool | None, "lapack_threads": int | None}`
    (None: left alone, or no SciPy OpenBLAS/threadpoolctl to set).
    """
    applied = {"x64": None, "lapack_threads": None}
    if x64 is not None:
        if not isinstance(x64, bool):
            raise TypeError(f"`x64` must be True, False or None; got {x64!r}")
        jax.config.update("jax_enable_x64", x64)
        applied["x64"] = x64
    if lapack_threads is not None and lapack_threads != _KEEP:
        applied["lapack_threads"] = _set_lapack_threads(_thread_count(lapack_threads))
    return applied


def configure_from_environment() -> dict:
    """The settings of an import (64-bit on, one LAPACK thread) less the opt-outs
    named in the environment (module docstring). Called once by `import lnn_flow`."""
    x64 = None if os.environ.get("LNN_FLOW_NO_X64", "") not in ("", "0") else True
    return configure(x64=x64, lapack_threads=limit_from_environment())


def limit_from_environment() -> int | str:
    """`$LNN_FLOW_LAPACK_THREADS` (default 1), or `"keep"` when the user set
    `OPENBLAS_NUM_THREADS` or `OMP_NUM_THREADS`."""
    if any(name in os.environ for name in _USER_THREADS):
        return _KEEP
    value = os.environ.get("LNN_FLOW_LAPACK_THREADS", "1").strip()
    return value if value == _KEEP else _thread_count(value, "$LNN_FLOW_LAPACK_THREADS")


def limit_lapack_threads() -> int | None:
    """Apply [`limit_from_environment`][]; returns the limit applied, or None.
    Kept for `__init__` until it calls [`configure_from_environment`][]."""
    return configure(lapack_threads=limit_from_environment())["lapack_threads"]


def _thread_count(value, name: str = "lapack_threads") -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or count < 1 or str(count) != str(value).strip():
        raise ValueError(f"`{name}` must be a positive integer or 'keep'; got {value!r}")
    return count


def _set_lapack_threads(limit: int) -> int | None:
    """Set the threads of the OpenBLAS bundled with SciPy (the one jaxlib calls);
    None if SciPy or threadpoolctl is missing."""
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
