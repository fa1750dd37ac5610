"""One settings object: every knob, its environment names, its defaults and its errors."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import logging
import typing
from pathlib import Path

import pytest

from codeintel import cli
from codeintel.cli import commands as cli_commands
from codeintel.cli import logs as cli_logs
from codeintel.cli import parser as cli_parser
from codeintel.core import errors, settings
from codeintel.core.embed.local import LocalEmbedder
from codeintel.core.settings import Settings
from codeintel.operator import spec

SRC = Path(settings.__file__).resolve().parents[1]
GROUPS = {f.name: typing.get_type_hints(Settings)[f.name] for f in dataclasses.fields(Settings)}


def _env_names() -> set[str]:
    names = set()
    for group, cls in GROUPS.items():
        for field in dataclasses.fields(cls):
            names.add(f"CODEINTEL_{group}_{field.name}".upper())
            names.update(field.metadata.get("env", ()))
    return names


class TestSources:
    def test_defaults(self) -> None:
        s = Settings.from_env({})
        assert s.log.level == "info" and s.log.format == "text"
        assert s.index.use_cuvs is True and s.index.result_file == ""
        assert s.git.credentials is None and s.server.api_token == ""
        assert s.embedder.model == settings.DEFAULT_MODEL

    def test_canonical_names(self) -> None:
        s = Settings.from_env(
            {
                "CODEINTEL_LOG_FORMAT": "json",
                "CODEINTEL_LOG_LEVEL": "debug",
                "CODEINTEL_INDEX_USE_CUVS": "false",
                "CODEINTEL_INDEX_RESULT_FILE": "/tmp/r.json",
                "CODEINTEL_GIT_USERNAME": "bot",
                "CODEINTEL_GIT_PASSWORD": "s3cret",
                "CODEINTEL_SERVER_API_TOKEN": "tok",
            }
        )
        assert (s.log.format, s.log.level) == ("json", "debug")
        assert s.index.use_cuvs is False and s.index.result_file == "/tmp/r.json"
        assert s.git.credentials == ("bot", "s3cret")
        assert s.server.api_token == "tok"

    def test_the_names_in_use_before_keep_working(self) -> None:
        s = Settings.from_env(
            {"CODEINTEL_API_TOKEN": "tok", "CODEINTEL_RESULT_FILE": "/r", "USE_CUVS": "0"}
        )
        assert s.server.api_token == "tok"
        assert s.index.result_file == "/r"
        assert s.index.use_cuvs is False

    def test_the_canonical_name_wins_over_an_alias(self) -> None:
        env = {"CODEINTEL_SERVER_API_TOKEN": "new", "CODEINTEL_API_TOKEN": "old"}
        assert Settings.from_env(env).server.api_token == "new"

    def test_flags_win_over_the_environment(self) -> None:
        env = {"CODEINTEL_LOG_LEVEL": "debug", "CODEINTEL_RESULT_FILE": "/env"}
        s = Settings.from_env(env, log={"level": "warning"}, index={"result_file": None})
        assert s.log.level == "warning"
        assert s.index.result_file == "/env"  # a flag left unset (None) changes nothing

    def test_a_password_alone_is_still_credentials(self) -> None:
        assert Settings.from_env({"CODEINTEL_GIT_PASSWORD": "t"}).git.credentials == ("", "t")


class TestErrors:
    @pytest.mark.parametrize(
        ("env", "named"),
        [
            ({"CODEINTEL_LOG_FORMAT": "xml"}, "CODEINTEL_LOG_FORMAT='xml'"),
            ({"USE_CUVS": "maybe"}, "USE_CUVS='maybe'"),
            ({"CODEINTEL_INDEX_NPROBE": "many"}, "CODEINTEL_INDEX_NPROBE='many'"),
            ({"CODEINTEL_LOG_LEVEL": "loud"}, "log level"),
        ],
    )
    def test_a_bad_value_names_the_variable(self, env: dict[str, str], named: str) -> None:
        with pytest.raises(errors.ConfigError, match=named):
            Settings.from_env(env)

    def test_an_unknown_override_is_refused(self) -> None:
        with pytest.raises(errors.ConfigError, match=r"unknown setting log\.colour"):
            Settings.from_env({}, log={"colour": "red"})

    def test_a_bad_log_level_is_one_cli_line(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("CODEINTEL_LOG_LEVEL", "loud")
        assert cli.main(["doctor", "--json"]) == 2
        assert capsys.readouterr().err.startswith("error: log level must be")


class TestTheCliReadsItsSettings:
    def test_log_format_and_level(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        monkeypatch.setenv("CODEINTEL_LOG_FORMAT", "json")
        monkeypatch.setenv("CODEINTEL_LOG_LEVEL", "warning")
        try:
            cli_logs.configure(None)
            assert root.level == logging.WARNING
            logging.getLogger("codeintel.test").warning("hello %s", "there")
            line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
            assert (line["msg"], line["level"]) == ("hello there", "warning")
            cli_logs.configure("debug")  # the flag wins
            assert root.level == logging.DEBUG
        finally:
            root.handlers[:], _ = saved
            root.setLevel(saved[1])

    def test_result_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("CODEINTEL_RESULT_FILE", str(tmp_path / "env.json"))
        args = cli_parser.build().parse_args(["index", "merge", "--store", str(tmp_path)])
        assert cli_commands.settings_from(args).index.result_file == str(tmp_path / "env.json")
        args.result_file = str(tmp_path / "flag.json")
        assert cli_commands.settings_from(args).index.result_file == str(tmp_path / "flag.json")


class TestOnePlace:
    def test_every_field_has_a_docstring(self) -> None:
        tree = ast.parse(Path(settings.__file__).read_text(encoding="utf-8"))
        missing = []
        for node in tree.body:
            if not isinstance(node, ast.ClassDef) or node.name not in {
                c.__name__ for c in GROUPS.values()
            }:
                continue
            body = node.body
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    following = body[i + 1] if i + 1 < len(body) else None
                    documented = (
                        isinstance(following, ast.Expr)
                        and isinstance(following.value, ast.Constant)
                        and isinstance(following.value.value, str)
                    )
                    if not documented:
                        missing.append(f"{node.name}.{stmt.target.id}")
        assert missing == []

    def test_the_default_model_is_written_once(self) -> None:
        assert inspect.signature(LocalEmbedder).parameters["model"].default == (
            settings.DEFAULT_MODEL
        )
        assert spec.DEFAULT_EMBED_MODEL == settings.DEFAULT_MODEL
        embed_server = cli_parser.build().parse_args(["embed-server"])
        assert embed_server.model == settings.DEFAULT_MODEL
        spelled = [
            str(path.relative_to(SRC))
            for path in SRC.rglob("*.py")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and node.value == settings.DEFAULT_MODEL
        ]
        assert spelled == ["core/settings.py"]

    def test_env_sets_knows_canonical_names_and_aliases(self) -> None:
        assert settings.env_sets("store", "path", {"CODEINTEL_STORE_PATH": "/s"})
        assert not settings.env_sets("store", "path", {"CODEINTEL_STORE_KEEP_GENERATIONS": "1"})
        assert settings.env_sets("server", "api_token", {"CODEINTEL_API_TOKEN": "t"})
        assert settings.env_sets("embedder", "onnx_cache", {"CODEINTEL_ONNX_CACHE": "/c"})
        assert not settings.env_sets("embedder", "onnx_cache", {})

    def test_no_module_reads_a_setting_from_the_environment(self) -> None:
        """``os.environ[...]``, ``.get(...)``, ``getenv`` or ``in os.environ`` of a settings name."""
        names = _env_names()
        found = set()
        for path in SRC.rglob("*.py"):
            rel = str(path.relative_to(SRC))
            if rel == "core/settings.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in names:
                    parent_reads = _reads_environment(path, node)
                    if parent_reads:
                        found.add((rel, node.value))
        assert found == set()


def _reads_environment(path: Path, target: ast.Constant) -> bool:
    """Whether ``target`` is the key of an environment read in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        keys: list[ast.expr] = []
        if isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            if func in {"os.environ.get", "os.getenv", "environ.get"}:
                keys = [node.args[0]]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in {"os.environ"}:
            keys = [node.slice]
        elif isinstance(node, ast.Compare) and any(
            ast.unparse(c) == "os.environ" for c in node.comparators
        ):
            keys = [node.left]
        if any(
            isinstance(k, ast.Constant)
            and k.value == target.value
            and (k.lineno, k.col_offset) == (target.lineno, target.col_offset)
            for k in keys
        ):
            return True
    return False
