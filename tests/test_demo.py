"""The demo's printed table (`lnn_flow._demo.format_table`): the quantities at their
precisions, one line per depth, on the shared table printer. The solves behind it are
tested through the command in tests/test_cli.py."""

from lnn_flow._demo import format_table

ROW = dict(depth=3, loss_factor=1.23456e-4, loss_end_to_end=1.23457e-4, max_gap=3.2e-9,
           unbalancedness_t0=0.0, unbalancedness_drift=1.1e-12,
           relative_error_to_truth=0.0123, steps_factor=120, steps_end_to_end=98,
           seconds_factor=1.234, seconds_end_to_end=0.5, success=True)


def test_one_aligned_line_per_depth_with_each_quantitys_precision():
    lines = format_table([ROW, {**ROW, "depth": 10, "success": False}]).splitlines()
    header, rule, first, second, footer = lines
    assert set(rule) == {"-"} and len(rule) == len(header) == len(first) == len(second)
    assert first.split() == ["3", "1.235e-04", "1.235e-04", "3.2e-09", "0.0e+00",
                             "1.1e-12", "1.230e-02", "120/98", "1.23/0.50", "yes"]
    assert second.split()[0] == "10" and second.split()[-1] == "NO"
    assert footer.startswith("* wall seconds")
