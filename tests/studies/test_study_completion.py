"""The completion study (Supposition 1, Figure 2) at reduced size: deeper networks
complete a low-rank matrix from few entries at lower error and rank than depth 1; and
its second part, the error against where the flow stops and the init scale."""

import math

import jax
import jax.numpy as jnp
import pytest
from conftest import trajectory_tolerance

from lnn_flow._studies import _study_completion as completion
from lnn_flow._studies import _study_completion_tail as tail
from lnn_flow import init, problems, studies
from lnn_flow._maths._network import end_to_end
from lnn_flow._studies._study_rows import solution_row


@pytest.fixture(scope="module")
def report():
    return studies.completion_study(**studies.SMALL["completion"])


def test_depth_three_completes_low_rank_far_better_than_depth_one(report):
    rows = report.tables["completion"]
    few = max(r["observations"] for r in rows)  # 300 of 900 entries, rank 2
    by = {r["solution"]: r for r in rows if r["observations"] == few}
    assert by["depth 1"]["success"] and by["depth 3"]["success"]
    assert by["depth 3"]["relative_error"] < 0.1 * by["depth 1"]["relative_error"]
    assert by["depth 3"]["effective_rank"] < by["depth 1"]["effective_rank"] / 3
    # Supposition 1 fails here: depth 3 beats the minimum-nuclear-norm solution.
    assert by["depth 3"]["relative_error"] < by["min nuclear norm"]["relative_error"]
    # Both fit the observations: the train loss fell by the requested 1e-6.
    assert by["depth 3"]["train_loss"] < 1e-8
    assert report.parameters["num_measurements"] == [150, 300]


def test_counts_is_the_deprecated_name_of_num_measurements():
    # 26 > 5^2 entries: refused by the problem, after the name is resolved, before
    # any solve.
    with pytest.warns(DeprecationWarning, match="`counts` is deprecated.*"
                                                "use `num_measurements`"):
        with pytest.raises(ValueError, match="`num_measurements` must be <= the number "
                                             "of entries 25; got 26"):
            studies.completion_study(size=5, rank=1, counts=(26,), depths=(1,))
    with pytest.raises(TypeError, match="both `num_measurements` and its deprecated "
                                        "name `counts`"):
        studies.completion_study(num_measurements=[10], counts=[10])


# --- the second part: where the flow stops and where it starts --------------------


def test_one_stopping_and_scale_row_per_depth_scale_and_reduction(report):
    small = studies.SMALL["completion"]
    rows = report.tables["stopping_and_scale"]
    keys = [(r["depth"], r["scale"], r["loss_reduction"]) for r in rows]
    assert sorted(keys) == sorted(
        (d, s, r) for d in (2, 3) for s in small["scales"] for r in small["loss_reductions"]
    )
    assert all(r["seeds"] == small["seeds"] for r in rows)
    for key in ("loss_reductions", "scales", "seeds", "tail_num_measurements",
                "tail_depths"):
        assert key in report.parameters
    assert set(report.figures) == {"completion", "stopping_and_scale"}
    reference = report.facts["stopping_and_scale_min_nuclear_norm_error"]
    assert reference == next(r["relative_error"] for r in report.tables["completion"]
                             if r["solution"] == "min nuclear norm"
                             and r["observations"] == small["tail_num_measurements"])


def test_depth_three_error_falls_as_the_loss_reduction_deepens(report):
    rows = [r for r in report.tables["stopping_and_scale"] if r["depth"] == 3]
    for scale in {r["scale"] for r in rows}:
        mine = sorted((r for r in rows if r["scale"] == scale and r["finished"]),
                      key=lambda r: -r["loss_reduction"])
        assert len(mine) == 3  # every seed finished at every reduction
        errors = [r["relative_error_median"] for r in mine]
        assert errors == sorted(errors, reverse=True)
    # From the smaller init the error keeps a part ~ sqrt(loss): each 100x deeper
    # stop divides it by ~10 (seen: 0.032, 0.0032, 0.00032); at least by 3 here.
    small = sorted((r for r in rows if r["scale"] == 1e-4),
                   key=lambda r: -r["loss_reduction"])
    for shallow, deep in zip(small, small[1:]):
        assert deep["relative_error_median"] < shallow["relative_error_median"] / 3


def test_chained_stops_agree_with_one_solve_to_the_deepest_stop(report):
    # Seed 0 of the study at depth 3, init scale 1e-4 (the study's documented keys).
    small = studies.SMALL["completion"]
    m, depth, size = small["tail_num_measurements"], 3, small["size"]
    key_problem, _ = jax.random.split(jax.random.PRNGKey(0))
    loss, truth = problems.random_matrix_completion(key_problem, (size, size),
                                                    small["rank"], m)
    ws0 = init.balanced(tail.seed_key(0, 0), (size,) * (depth + 1), 1e-4)
    reductions = small["loss_reductions"]
    chain = tail.chained_stops(loss, ws0, reductions, 1e5 * m)
    (direct,) = tail.chained_stops(loss, ws0, reductions[-1:], 1e5 * m)
    assert all(s.finished for s in chain) and direct.finished
    # Up to the first stop both solves take the same steps (the stop does not change
    # the step sizes); after it they differ, near a minimum where errors do not grow,
    # so the tolerance rule of conftest applies to the N steps taken after it, for
    # each factor's entries (rtol, atol: factor_flow's defaults). Balanced factors
    # (Lemma 1) have ||W_j||_2 = sigma_1(W)^(1/n); to first order
    # ||dW||_F <= sum_j prod_{i != j} ||W_i||_2 ||dW_j||_F, with ||dW_j||_F <= size
    # times the entrywise bound.
    first = chain[0].steps
    n_after = (chain[-1].steps - first) + (direct.steps - first)
    s1 = float(jnp.linalg.norm(direct.W, 2)) ** (1 / depth)
    entry = 2 * trajectory_tolerance(n_after, s1, rtol=1e-8, atol=1e-10)
    tolerance = depth * s1 ** (depth - 1) * size * entry
    assert float(jnp.linalg.norm(chain[-1].W - direct.W)) <= tolerance  # seen: ~1e-12
    # The study's row holds this chain: with two seeds, q10 and q90 fix both errors.
    row = next(r for r in report.tables["stopping_and_scale"] if r["depth"] == depth
               and r["scale"] == 1e-4 and r["loss_reduction"] == reductions[-1])
    spread = (row["relative_error_q90"] - row["relative_error_q10"]) / 0.8
    low = row["relative_error_q10"] - 0.1 * spread
    error = float(jnp.linalg.norm(chain[-1].W - truth) / jnp.linalg.norm(truth))
    assert min(abs(error - low), abs(error - low - spread)) < 1e-9


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (dict(seeds=0), ValueError, "`seeds` must be >= 1; got 0"),
        (dict(seeds=2.0), TypeError, "`seeds` must be an integer"),
        (dict(loss_reductions=(1e-4, 0.0)), ValueError,
         r"`loss_reductions` must lie in \(0, 1\); got 0.0"),
        (dict(loss_reductions=(-1e-4,)), ValueError,
         r"`loss_reductions` must lie in \(0, 1\); got -0.0001"),
        (dict(loss_reductions=(1.0,)), ValueError,
         r"`loss_reductions` must lie in \(0, 1\); got 1.0"),
        (dict(loss_reductions=(float("nan"),)), ValueError,
         "`loss_reductions` must be finite"),
        (dict(scales=(1e-3, 0.0)), ValueError, "`scales` must be > 0; got 0.0"),
        (dict(scales=(-1e-3,)), ValueError, "`scales` must be > 0; got -0.001"),
        (dict(scales=("small",)), TypeError, "`scales` must hold real numbers"),
        (dict(scales=(1e-3,), tail_depths=()), ValueError, "`tail_depths` must be"),
        (dict(scales=(1e-3,), tail_num_measurements=26), ValueError,
         "`tail_num_measurements` must be <= the number of entries 25; got 26"),
    ],
)
def test_bad_second_part_arguments_are_refused_before_any_solve(monkeypatch, bad, error,
                                                                message):
    def no_solve(*args, **kwargs):
        raise AssertionError("solved before the arguments were checked")

    monkeypatch.setattr(completion, "_solve", no_solve)
    monkeypatch.setattr(tail, "factor_flow", no_solve)
    with pytest.raises(error, match=message):
        studies.completion_study(size=5, rank=1, num_measurements=(10,), depths=(1,),
                                 **bad)


def test_the_second_part_runs_only_when_asked(monkeypatch):
    # Every solve replaced by a stand-in (1.1 W*): this checks the layout only.
    def exact(loss, truth, m, depth, *args):
        label = "min nuclear norm" if depth is None else f"depth {depth}"
        return solution_row(label, 1.1 * truth, truth, 0.0, 0.0, True, observations=m,
                            depth="-" if depth is None else depth)

    monkeypatch.setattr(completion, "_solve", exact)
    kwargs = dict(size=5, rank=1, num_measurements=(10,), depths=(1,))
    report = studies.completion_study(**kwargs)
    assert set(report.tables) == {"completion"} and set(report.figures) == {"completion"}
    assert set(report.parameters) == {"size", "rank", "num_measurements", "depths",
                                      "scale", "loss_reduction", "seed", "init", "solver"}


def test_unfinished_seeds_are_counted_and_their_rows_are_nan(monkeypatch, tmp_path):
    # Stand-ins for every solve: seed 1 never reaches the deepest stop, and neither
    # seed does from the larger init; the reference is solved for a count the first
    # table does not hold.
    solved = []

    def exact(loss, truth, m, depth, *args):
        solved.append((m, depth))
        label = "min nuclear norm" if depth is None else f"depth {depth}"
        return solution_row(label, 1.1 * truth, truth, 0.0, 0.0, True, observations=m,
                            depth="-" if depth is None else depth)

    calls = []

    def chain(loss, ws0, reductions, t1):  # called per scale (smaller first), per seed
        big, seed = divmod(len(calls), 2)
        calls.append(ws0)
        reached = lambda k: not big and (seed == 0 or k == 0)
        return [tail.Stop(end_to_end(ws0), reached(k), 10 * (k + 1))
                for k in range(len(reductions))]

    monkeypatch.setattr(completion, "_solve", exact)
    monkeypatch.setattr(tail, "chained_stops", chain)
    report = studies.completion_study(
        size=5, rank=1, num_measurements=(10,), depths=(1,), loss_reductions=(1e-2, 1e-4),
        scales=(1e-4, 1e-2), seeds=2, tail_num_measurements=12, tail_depths=(2,))
    assert (12, None) in solved
    rows = {(r["scale"], r["loss_reduction"]): r for r in report.tables["stopping_and_scale"]}
    assert all(r["finished"] == 0 and math.isnan(r["relative_error_median"])
               for (s, _), r in rows.items() if s == 1e-2)
    assert rows[1e-4, 1e-2]["finished"] == 2 and rows[1e-4, 1e-4]["finished"] == 1
    assert "Not every seed finished" in report.description
    report.write(tmp_path)  # the figure marks the rows without a finished seed
    assert (tmp_path / "stopping_and_scale.png").stat().st_size > 0


@pytest.mark.parametrize(
    "bad,error,message",
    [
        (dict(init="paper"), ValueError,
         r"`init` must be one of \['balanced', 'independent'\]; got 'paper'"),
        (dict(solver="rkc2"), ValueError,
         r"`solver` must be one of \['auto', 'tsit5'\]; got 'rkc2'"),
        (dict(solver=None), TypeError, r"`solver` must be a string"),
    ],
)
def test_bad_init_and_solver_are_refused_before_any_solve(monkeypatch, bad, error,
                                                          message):
    monkeypatch.setattr(completion, "_solve", lambda *a: pytest.fail("solved"))
    with pytest.raises(error, match=message):
        studies.completion_study(size=5, rank=1, num_measurements=(10,), depths=(1,),
                                 **bad)


@pytest.mark.parametrize("name", ["balanced", "independent"])
def test_each_init_protocol_draws_its_factors_and_names_itself(monkeypatch, name):
    """The flow starts from `lf.init.<name>` at `scale` (the same key for every depth),
    solved by the named solver; the report says which protocol it followed."""
    seen = {}

    def record(loss, truth, m, depth, init_factors, reduction, solver):
        if depth is not None:
            seen[depth] = (init_factors(depth), solver)
        label = "min nuclear norm" if depth is None else f"depth {depth}"
        return solution_row(label, 1.1 * truth, truth, 0.0, 0.0, True, observations=m,
                            depth="-" if depth is None else depth)

    monkeypatch.setattr(completion, "_solve", record)
    report = studies.completion_study(size=5, rank=1, num_measurements=(10,),
                                      depths=(2,), scale=1e-3, init=name, solver="tsit5")
    ws, solver = seen[2]
    key = jax.random.split(jax.random.PRNGKey(0))[1]
    expected = getattr(init, name)(key, (5, 5, 5), 1e-3)
    for a, b in zip(ws, expected):
        assert jnp.array_equal(a, b)
    assert solver is None  # "tsit5": factor_flow's default solver
    assert report.parameters["init"] == name and report.parameters["solver"] == "tsit5"
    assert completion.PROTOCOLS[name].format(scale=1e-3) in report.description
