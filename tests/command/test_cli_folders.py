"""Where `lnn-flow` writes: one convention, `reports/NAME` for every command, a sweep's
groups in `reports/NAME/groups` whether `run` or `sweep` ran it."""

from lnn_flow._command._cli import _default_groups


def test_sweeps_default_to_the_groups_folder_of_their_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _default_groups("s") == tmp_path.joinpath("reports", "s", "groups").relative_to(tmp_path)
    assert capsys.readouterr().err == ""


def test_an_old_results_folder_is_pointed_out_not_moved(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "s").mkdir(parents=True)
    (tmp_path / "results" / "s" / "study.json").write_text("{}")
    assert str(_default_groups("s")) == "reports/s/groups"
    assert "pass --out results/s" in capsys.readouterr().err
    (tmp_path / "reports" / "s").mkdir(parents=True)  # the new folder exists: no note
    _default_groups("s")
    assert capsys.readouterr().err == ""
    assert (tmp_path / "results" / "s" / "study.json").exists()
