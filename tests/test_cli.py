"""The ``codeintel`` entry point: dispatch, flag errors, one-line errors."""

from __future__ import annotations

import pytest

from codeintel import __version__
from codeintel.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"codeintel {__version__}"


def test_operator_options_reach_the_operator_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["operator", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: codeintel operator") and "--all-namespaces" in out


def test_unknown_flags_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "q", "--store", str(tmp_path), "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_search_without_an_index_is_one_clear_line(tmp_path, capsys):
    assert main(["search", "q", "--store", str(tmp_path / "none"), "-k", "3"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "index build" in err[0]


def test_k_out_of_range(tmp_path, capsys):
    assert main(["search", "q", "--store", str(tmp_path), "-k", "101"]) != 0
    assert capsys.readouterr().err.strip() == "error: -k must be between 1 and 100"


def test_default_store_is_per_repository_under_the_cache(tmp_path, monkeypatch):
    from codeintel.cli.commands import default_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = tmp_path / "My Repo"
    repo.mkdir()
    here = default_store(str(repo))
    assert here.parent == tmp_path / "cache" / "codeintel"
    assert here.name.startswith("My-Repo-")
    assert default_store(str(repo) + "/") == here, "one repository, one store"
    assert default_store(str(tmp_path / "other")) != here
    url = default_store("https://example.org/org/tool.git")
    assert url.name.startswith("tool-") and url != default_store("https://example.org/x/tool.git")


@pytest.mark.parametrize(
    "argv",
    [
        ["index", "build", ".", "--store", "{store}"],
        ["index", "update", "--store", "{store}"],
        ["index", "merge", "--store", "{store}"],
        ["index", "rollback", "--store", "{store}"],
        ["search", "q", "--store", "{store}"],
        ["index", "build", ".", "--store", "{store}/inside"],
        ["serve", "--store", "{store}", "--port", "0"],
        ["mcp", "--store", "{store}"],
    ],
)
@pytest.mark.timeout(60)  # before the fix, serve would start and block
def test_store_that_is_a_file_is_one_line(tmp_path, capsys, argv):
    store = tmp_path / "notes.txt"
    store.write_text("not a store")
    code = main([a.replace("{store}", str(store)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert lines == [line for line in err.strip().splitlines() if "notes.txt" in line]
    assert len(lines) == 1 and f"store path {store}" in lines[0] and "not a directory" in lines[0]
    assert store.read_text() == "not a store"
