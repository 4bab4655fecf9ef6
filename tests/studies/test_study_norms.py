"""The norms study (Lemma 2, Proposition 5) at reduced size: the norm grows as the loss
falls, and values past the precision floor are reported as such."""

from lnn_flow import studies


def test_norm_grows_as_loss_falls_in_the_2x2_example():
    report = studies.norms_study(**studies.SMALL["norms"])
    rows = {r["depth"]: r for r in report.tables["norms"]}
    assert rows[3]["bound_holds"] and rows[3]["det_sign_constant"]
    assert rows[3]["final_norm"] > 10 and rows[3]["final_loss"] < 1e-3
    assert rows[2]["precision_floor_reached"]  # reported, not silently trusted
