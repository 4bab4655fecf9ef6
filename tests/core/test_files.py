"""The one study-file reader: TOML or JSON by suffix, a table, one error per cause."""

import pytest

from lnn_flow._core._files import read_study_file


def test_reads_toml_and_json_alike(tmp_path):
    (tmp_path / "a.toml").write_text('name = "a"\n[grid]\ndepth = [2, 3]\n')
    (tmp_path / "a.json").write_text('{"name": "a", "grid": {"depth": [2, 3]}}')
    expected = {"name": "a", "grid": {"depth": [2, 3]}}
    assert read_study_file(tmp_path / "a.toml") == expected
    assert read_study_file(str(tmp_path / "a.json")) == expected


@pytest.mark.parametrize(
    "name,text,error,message",
    [
        ("missing.toml", None, FileNotFoundError, r"study file .*missing\.toml not found"),
        ("study.yaml", "a: 1", ValueError, r"study\.yaml must end in \.toml or \.json"),
        ("bad.toml", "x = [1,\n", ValueError, r"bad\.toml is not valid toml: "),
        ("bad.json", "{", ValueError, r"bad\.json is not valid json: "),
        ("list.json", "[1, 2]", ValueError, r"list\.json: a study file must hold a table"),
        ("latin1.toml", b"name = '\xe9'", ValueError, r"latin1\.toml is not valid toml"),
    ],
)
def test_each_failure_names_the_file_and_the_cause(tmp_path, name, text, error, message):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(error, match=message):
        read_study_file(path)


def test_a_folder_is_not_a_file_and_callers_may_word_parse_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        read_study_file(tmp_path)
    (tmp_path / "b.toml").write_text("x = \n")
    with pytest.raises(ValueError, match=r"b\.toml: not a valid TOML file: "):
        read_study_file(tmp_path / "b.toml", invalid="{path}: not a valid {KIND} file: {error}")
