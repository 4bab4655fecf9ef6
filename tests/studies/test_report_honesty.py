"""Reports claim only what was computed (issue 11).

- Values from after the precision floor (Proposition 5 at depth 2) are marked untrusted
  in every output: the Markdown table, summary.md, the CSV and results.json.
- The determinant panel plots the signed det, so a sign flip (impossible by Lemma 2)
  is visible, and the post-floor segments are dotted and named in the legend.
- Every number in a report's prose and tables is one the run computed: it appears in
  results.json (parameters, facts or table rows), to the digits shown.
- `lf.studies` is an attribute of the package, loaded lazily (matplotlib).

Each case is one line of data; the studies run once per module at tiny sizes.
"""

import csv
import decimal
import json
import re
import subprocess
import sys

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import lnn_flow as lf
from lnn_flow import studies, theory

# Tiny sizes: each study still runs every code path that writes prose or rows.
NORMS = dict(depths=(2, 3), t1=400.0, num_saves=120)
TINY = {
    "completion": dict(size=8, rank=1, num_measurements=(24,), depths=(2,), scale=1e-2),
    "greedy": dict(size=6, rank=2, depths=(2,), t1=100.0, scale=1e-2),
    "norms": NORMS,
    # Depth 2 not run: the report must not describe it (the old fixed text did).
    "norms_without_depth_2": dict(NORMS, depths=(3,)),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Each tiny study run once and written: name -> (report, folder)."""
    out = {}
    for name, params in TINY.items():
        study = studies.STUDIES[name.split("_")[0]]
        report = study(**params)
        folder = tmp_path_factory.mktemp(name)
        report.write(folder)
        out[name] = (report, folder)
    return out


# --- values past the precision floor are marked in every output ----------------------


def _markdown_rows(text: str) -> dict[int, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {int(cells[0]): dict(zip(head, cells)) for cells in body}


def _csv_rows(folder) -> dict[int, dict[str, str]]:
    with (folder / "norms.csv").open() as handle:
        return {int(r["depth"]): r for r in csv.DictReader(handle)}


def _json_rows(folder) -> dict[int, dict]:
    rows = json.loads((folder / "results.json").read_text())["tables"]["norms"]
    return {r["depth"]: {k: json.dumps(v) for k, v in r.items()} for r in rows}


OUTPUTS = [  # (output, rows by depth as text)
    ("Report.table", lambda report, folder: _markdown_rows(report.table("norms"))),
    ("summary.md", lambda report, folder: _markdown_rows(
        (folder / "summary.md").read_text().split("## norms")[1])),
    ("norms.csv", lambda report, folder: _csv_rows(folder)),
    ("results.json", lambda report, folder: _json_rows(folder)),
]


@pytest.mark.parametrize("output, rows_of", OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_post_floor_values_marked_untrusted(written, output, rows_of):
    rows = rows_of(*written["norms"])
    for key in ("final_loss", "final_norm"):
        assert "past floor" in rows[2][key], (output, key, rows[2][key])
        assert "past floor" not in rows[3][key], (output, key, rows[3][key])
    assert rows[2]["success"].lower() == "false" and rows[3]["success"].lower() == "true"


def test_last_trusted_values_are_reported_next_to_the_flagged_ones(written):
    """The depth-2 row keeps what can be trusted: the last save before the floor, which
    obeys Proposition 5's bound, while the flagged final values come after it."""
    report, folder = written["norms"]
    row = {r["depth"]: r for r in report.tables["norms"]}[2]
    assert isinstance(row["final_loss"], studies.Untrusted)
    assert 0 < row["trusted_until_t"] < NORMS["t1"]
    bound = float(theory.proposition5_norm_bound(row["loss_at_trusted_t"]))
    assert row["norm_at_trusted_t"] >= bound and row["bound_holds"]
    assert row["final_loss"] < row["loss_at_trusted_t"]  # the solve went on past it
    assert row["status"] == "precision floor"
    assert "Values marked `(past floor)`" in (folder / "summary.md").read_text()


# --- the det panel shows the sign ------------------------------------------------------


def test_det_panel_is_signed_and_post_floor_is_dotted(written):
    report, _ = written["norms"]
    norm_axes, det_axes = report.figures["norm_vs_loss"].axes
    assert det_axes.get_yscale() == "symlog"
    lines = [line for line in det_axes.get_lines() if not line.get_label().startswith("_")]
    solid = [line for line in lines if line.get_linestyle() == "-"]
    dotted = [line for line in lines if line.get_linestyle() == ":"]
    assert {line.get_label() for line in solid} == {"n = 2", "n = 3"}
    # Before the floor det W > 0 (Lemma 2); after it the computed det flips sign.
    assert all(np.all(line.get_ydata() > 0) for line in solid)
    assert len(dotted) == 1 and "untrusted" in dotted[0].get_label()
    assert np.min(dotted[0].get_ydata()) < 0
    labels = [line.get_label() for line in norm_axes.get_lines()]
    assert any("n = 2" in label and "untrusted" in label for label in labels)
    assert "Prop. 5 bound" in labels


def test_reference_finds_the_floor_before_det_flips_sign():
    """A tighter solve finds the error earlier than a sign flip does: before the floor
    the default solve's det is within 2% of an rtol 1e-12 solve (the check asks 1% of a
    reference with 100x tighter tolerance, whose own error adds at most ~1%); at the
    floor the sign has not flipped yet."""
    loss, W0 = theory.proposition5_loss(), jnp.array([[0.3, 0.1], [-0.05, 0.2]])
    ts = jnp.linspace(0.0, 400.0, NORMS["num_saves"])  # the study's shapes: no recompile
    solve = lambda rtol: lf.end_to_end_flow(loss, W0, 2, 400.0, ts, rtol=rtol,
                                            max_steps=200_000)
    sol, reference, tight = solve(1e-8), solve(1e-10), solve(1e-12)
    by_sign = theory.determinant_track(sol)
    by_reference = theory.determinant_track(sol, reference)
    first = int(jnp.argmax(by_reference.at_precision_floor))
    assert by_reference.floor_reached and 0 < first
    assert first < int(jnp.argmax(by_sign.at_precision_floor))
    assert by_reference.det[first] > 0  # not yet flipped: only the reference shows it
    det_tight = jnp.linalg.det(tight.end_to_end[:first])
    assert jnp.all(jnp.abs(by_reference.det[:first] - det_tight) <= 0.02 * jnp.abs(det_tight))


BAD_TRACKS = [  # (call, error, match)
    (lambda s: theory.determinant_track(s, eqx.tree_at(lambda r: r.end_to_end, s,
                                                       s.end_to_end[:3])),
     ValueError, "`reference` must be the same flow saved at the same `ts`"),
    (lambda s: theory.determinant_track(s, agreement=0.0), ValueError,
     "`agreement` must be > 0"),
]


@pytest.mark.parametrize("call, error, match", BAD_TRACKS)
def test_determinant_track_refuses_bad_reference(call, error, match):
    sol = lf.end_to_end_flow(theory.proposition5_loss(), jnp.eye(2), 2, 1.0,
                             jnp.linspace(0.0, 1.0, NORMS["num_saves"]), max_steps=200_000)
    with pytest.raises(error, match=match):
        call(sol)


STUDY_REFUSALS = [  # (parameters of norms_study, error, match): refused before solving
    (dict(W0=[[1j, 0.0], [0.0, 1.0]]), TypeError, "`W0` must be real"),
    (dict(W0=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), ValueError,
     r"`W0` must be a 2x2 matrix; got shape \(2, 3\)"),
    (dict(W0=[[0.0, 1.0], [1.0, 0.0]]), ValueError,
     "`W0` must have a positive determinant.*got det -1"),
    (dict(rtol=0.0), ValueError, r"`rtol` must be in \(0, 1\)"),
    (dict(t1=0.001), ValueError, r"`t1` must be > 0.01"),
    (dict(num_saves=2), ValueError, "`num_saves` must be >= 3; got 2"),
]


@pytest.mark.parametrize("params, error, match", STUDY_REFUSALS)
def test_norms_study_refuses_bad_input(params, error, match):
    with pytest.raises(error, match=match):
        studies.norms_study(**params)


# --- prose and tables state only computed numbers -------------------------------------

# A citation of the notes ("eq. (10)", "Proposition 5") is a reference, not a result;
# `code spans` hold formulas (`det = -1`); an identifier's digits (`sigma_1`, `w12`)
# name things. Every other number is a result and must be in results.json.
_CITATION = re.compile(
    r"\b(?:eqs?\.|Figure|Theorem|Lemma|Propositions?|Prop\.|Supposition|Definition|"
    r"Corollary|Section|Exercise|Claim)\s*\(?\d+\)?"
)
_NUMBER = re.compile(r"(?<![\w.^/])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def prose_numbers(text: str) -> list[str]:
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"!?\[[^\]]*\]\([^)]*\)", " ", text)  # figure and CSV links
    return _NUMBER.findall(_CITATION.sub(" ", text))


def computed_values(data, skip=()) -> list[float]:
    """Every number in results.json, including those inside strings ("depth 3"),
    except under the keys `skip`."""
    if isinstance(data, bool) or data is None:
        return []
    if isinstance(data, (int, float)):
        return [float(data)]
    if isinstance(data, str):
        return [float(n) for n in _NUMBER.findall(data)]
    if isinstance(data, dict):
        data = [v for k, v in data.items() if k not in skip]
    return [v for item in data for v in computed_values(item, skip)]


def unexplained(text: str, values: list[float]) -> list[str]:
    """Numbers in `text` that no value rounds to, at the digits shown."""
    values = np.asarray(values)
    missing = []
    for token in prose_numbers(text):
        shown = decimal.Decimal(token)
        half_unit = 0.5 * 10.0 ** shown.as_tuple().exponent
        if not np.any(np.abs(values - float(shown)) <= half_unit * (1 + 1e-9)):
            missing.append(token)
    return missing


@pytest.mark.parametrize("name", list(TINY))
def test_every_number_in_summary_is_computed(written, name):
    _, folder = written[name]
    values = computed_values(json.loads((folder / "results.json").read_text()))
    text = (folder / "summary.md").read_text()
    assert prose_numbers(text), "the check found no numbers to check"
    assert unexplained(text, values) == []


FABRICATED = [  # (sentence added to a real summary, numbers that must be caught)
    ("The networks' error floor (~1e-3) is set by the stopping loss.", ["1e-3"]),
    ("loss_reduction = 1e-8 gives 2e-4 to 6e-4 at 15x the wall time.",
     ["1e-8", "2e-4", "6e-4", "15"]),
]


@pytest.mark.parametrize("sentence, caught", FABRICATED)
def test_fixed_sentences_would_be_caught(written, sentence, caught):
    """The two sentences every completion report used to state, whatever was run.
    Wall times are left out of the values: one could match a number by chance."""
    _, folder = written["completion"]
    values = computed_values(json.loads((folder / "results.json").read_text()),
                             skip=("seconds",))
    assert unexplained(sentence, values) == caught


def test_report_does_not_describe_a_depth_it_did_not_run(written):
    report, _ = written["norms_without_depth_2"]
    assert [r["depth"] for r in report.tables["norms"]] == [3]
    assert not re.search(r"depth 2\b", report.description, re.IGNORECASE)


# --- lf.studies -------------------------------------------------------------------------


def test_studies_is_an_attribute_and_import_stays_light():
    code = (
        "import sys, lnn_flow as lf; assert 'matplotlib' not in sys.modules; "
        "assert lf.studies.norms_study; assert 'matplotlib' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert lf.studies is studies
