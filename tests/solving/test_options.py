"""`SolveOptions`: the defaults of every flow live in one place, and every flow reads
them from there."""

import dataclasses
import inspect

import diffrax
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow._solving._options import (
    DEFAULTS,
    NAMES,
    SolveKwargs,
    SolveOptions,
    check_output,
    prepare,
)


def test_every_flow_takes_the_options_as_one_keyword_set():
    # No flow re-lists the options: each takes `**options: Unpack[SolveKwargs]`,
    # whose keys are the fields of `SolveOptions` (defaults written once, there).
    assert set(SolveKwargs.__annotations__) == set(NAMES)
    flows = (lf.factor_flow, lf.end_to_end_flow, lf.theory.symmetric_flow,
             lf.theory.symmetric_factor_flow)
    for flow in flows:
        params = inspect.signature(flow).parameters
        assert not set(params) & set(NAMES), flow.__name__
        assert params["options"].kind is inspect.Parameter.VAR_KEYWORD, flow.__name__


def test_unknown_options_are_refused_by_every_flow():
    W = np.eye(2)
    loss = lf.losses.WhitenedSquare(W)
    calls = [
        lambda: lf.factor_flow(loss, (W, W), 1.0, tolerance=1e-3),
        lambda: lf.end_to_end_flow(loss, W, 2, 1.0, tolerance=1e-3),
        lambda: lf.theory.symmetric_flow(loss, W, 1.0, tolerance=1e-3),
        lambda: lf.theory.symmetric_factor_flow(loss, W, 1.0, tolerance=1e-3),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"unknown solve options: \['tolerance'\]"):
            call()


def test_from_kwargs_fills_defaults_and_refuses_unknown_keys():
    options = SolveOptions.from_kwargs({"rtol": 1e-6, "steady_state": True})
    assert options == dataclasses.replace(DEFAULTS, rtol=1e-6, steady_state=True)
    with pytest.raises(TypeError, match=r"unknown solve options: \['tolerance'\]"):
        SolveOptions.from_kwargs({"tolerance": 1e-3})


def test_solve_kwargs_are_what_prepare_checks():
    kwargs = DEFAULTS.solve_kwargs()
    assert set(kwargs) == set(NAMES) - {"dense", "progress_meter"}
    # `atol=None` is each system's default, resolved by the solve before `prepare`.
    assert kwargs["atol"] is None
    checked = prepare(np.ones((2, 2)), t1=1.0, ts=None, **{**kwargs, "atol": 1e-10})
    assert isinstance(checked["solver"], diffrax.Tsit5)  # `None` means the default
    assert float(checked["rtol"]) == DEFAULTS.rtol
    assert np.array_equal(checked["ts"], [0.0, 1.0])  # no `ts`: save t0 and t1


def test_check_output_names_the_argument():
    check_output(False, None)
    check_output(True, diffrax.NoProgressMeter())
    with pytest.raises(TypeError, match="`dense` must be True or False"):
        check_output("yes", None)
    with pytest.raises(TypeError, match="`progress_meter` must be a diffrax progress"):
        check_output(False, object())


def test_solve_kwargs_keep_modules_as_given():
    # A solver or controller is itself a dataclass: passed through, not converted.
    solver = diffrax.Dopri5()
    controller = diffrax.PIDController(rtol=1e-6, atol=1e-8)
    options = SolveOptions(solver=solver, stepsize_controller=controller)
    kwargs = options.solve_kwargs()
    assert kwargs["solver"] is solver and kwargs["stepsize_controller"] is controller


def test_one_options_object_drives_every_flow():
    W = np.eye(2)
    loss = lf.losses.WhitenedSquare(2 * W)
    options = lf.SolveOptions(rtol=1e-6, max_steps=64)
    assert options.kwargs() == {name: getattr(options, name) for name in NAMES}
    by_object = lf.end_to_end_flow(loss, 0.5 * W, 2, 1.0, **options.kwargs())
    by_keywords = lf.end_to_end_flow(loss, 0.5 * W, 2, 1.0, rtol=1e-6, max_steps=64)
    assert np.array_equal(by_object.end_to_end, by_keywords.end_to_end)
