"""Step-size controllers at matched tolerance: trajectory error and gradient
evaluations of lnn_flow's default PI controller and diffrax's I controller, next to
`jax.experimental.ode.odeint`, on `peers.py`'s problem at one seed.

For each `rtol` (atol = 1e-2 rtol, as in `peers.py`), three solves of the same factor
flow (eq. 2) from the same init:
- `odeint`: `jax.experimental.ode.odeint` (dopri5), as `peers.py` runs it;
- `lnn I`: `lf.factor_flow` with `stepsize_controller=diffrax.PIDController(rtol,
  atol)`, diffrax's default (an I controller: pcoeff 0, icoeff 1);
- `lnn PI`: `lf.factor_flow` with lnn_flow's default controller
  (`PIDController(pcoeff=0.4, icoeff=0.3)`, `lnn_flow._solving._controller`).
Error: `peers.py`'s trajectory error (max over saves of the Frobenius error of the
end-to-end matrix against its Dopri8 reference at rtol 1e-13, relative to the largest
reference norm). A controller whose error falls in proportion to `rtol` lets a user
buy accuracy with the tolerance; one whose error stalls does not.

Usage: python benchmarks/controller.py [--dims 10 20 100]
           [--rtols 1e-4 5e-5 2e-5 1e-5 5e-6 2e-6 1e-6]
"""

import argparse

import diffrax
import jax
import numpy as np
import peers

import lnn_flow as lf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10, 20, 100])
    parser.add_argument("--rtols", type=float, nargs="+",
                        default=[1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6])
    args = parser.parse_args()
    ts = jax.numpy.linspace(0.0, 60.0, 61)
    print(f"backend {jax.default_backend()}, peers.py's problem at B = 1 (depth "
          f"{peers.DEPTH}, m = 8 d), atol = {peers.ATOL_FACTOR:g} rtol; "
          "error / gradient evaluations\n")
    print(f"{'d':>4} {'rtol':>7} {'odeint':>16} {'lnn I':>16} {'lnn PI':>16}")
    for d in args.dims:
        loss, _, ws, ref, make, count = peers.one_seed(d, ts)
        for rtol in args.rtols:
            atol = rtol * peers.ATOL_FACTOR
            cells = []
            W, _ = make(rtol, atol)[1]()
            cells.append((peers.trajectory_error(W, ref), count(rtol, atol)))
            for controller in (diffrax.PIDController(rtol=rtol, atol=atol), None):
                sol = lf.factor_flow(loss, ws, 60.0, ts, rtol=rtol, atol=atol,
                                     max_steps=peers.MAX_STEPS,
                                     stepsize_controller=controller)
                cells.append((
                    peers.trajectory_error(np.asarray(sol.end_to_end)[None], ref),
                    int(sol.stats.num_vector_field_evals),
                ))
            text = " ".join(f"{f'{e:.1e} / {n}':>16}" for e, n in cells)
            print(f"{d:>4} {rtol:>7.0e} {text}", flush=True)


if __name__ == "__main__":
    main()
