"""Scopes, the tokens file and the Gate on their own: what a credential may read."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from codeintel.core import errors
from codeintel.core.settings import ServerSettings
from codeintel.searcher import access, credentials, tools

NAMES = ["team-a/billing", "team-a/mail", "team-b/web", "team-c/docs", "shared/docs"]


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write_tokens(path: Path, rows: list[dict[str, object]]) -> None:
    # A fresh inode and mtime each time, as an editor or a Secret update replaces it.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, path)


class TestScope:
    @pytest.mark.parametrize(
        ("patterns", "allowed"),
        [
            (("team-a/*",), ["team-a/billing", "team-a/mail"]),
            (("*",), NAMES),
            (("team-a",), ["team-a/billing", "team-a/mail"]),  # a namespace, whole
            (("*/docs",), ["team-c/docs", "shared/docs"]),
            (("shared/docs",), ["shared/docs"]),
            (("team-a/b*", "team-c/docs"), ["team-a/billing", "team-c/docs"]),
            (("docs",), []),  # anchored at the namespace: no "any depth" match
            ((), []),
        ],
    )
    def test_globs_over_namespace_and_name(
        self, patterns: tuple[str, ...], allowed: list[str]
    ) -> None:
        assert access.Scope("t", patterns).filter(NAMES) == allowed

    def test_a_forwarded_scope_only_narrows(self) -> None:
        credential = access.Scope("router", ("team-a/*",))
        wider = credential.narrowed(access.Scope("team-a", ("*",)))
        assert wider.filter(NAMES) == ["team-a/billing", "team-a/mail"]
        narrower = access.Scope("api", None).narrowed(access.Scope("x", ("team-b/web",)))
        assert narrower.filter(NAMES) == ["team-b/web"] and narrower.identity == "x"

    def test_the_header_round_trips_every_layer(self) -> None:
        scope = access.Scope("a", ("team-a/*",)).narrowed(access.Scope("b", ("*/mail",)))
        value = access.encode(scope)
        assert value is not None
        back = access.decode(value)
        assert back.filter(NAMES) == scope.filter(NAMES) == ["team-a/mail"]
        assert access.encode(access.Scope("all")) is None

    @pytest.mark.parametrize(
        "value", ["{", '{"layers": 3}', '{"layers": [["!x"]]}', '{"layers": [[""]]}', "[]"]
    )
    def test_a_malformed_header_is_a_400(self, value: str) -> None:
        with pytest.raises(errors.QueryError) as e:
            access.decode(value)
        assert e.value.field == access.SCOPE_HEADER


class TestSelect:
    def test_hidden_repositories_answer_as_unknown_ones(self) -> None:
        team_a = access.Caller(access.Scope("team-a", ("team-a/*",)))
        with access.acting_as(team_a):
            assert tools.select(NAMES, None) == ["team-a/billing", "team-a/mail"]
            assert tools.select(NAMES, ["*"]) == ["team-a/billing", "team-a/mail"]
            with pytest.raises(errors.RepoNotFoundError) as hidden:
                tools.select(NAMES, ["team-b/web"], "repo")
            with pytest.raises(errors.RepoNotFoundError) as unknown:
                tools.select(NAMES, ["team-b/nope"], "repo")
        assert str(hidden.value).replace("team-b/web", "X") == str(unknown.value).replace(
            "team-b/nope", "X"
        )
        assert hidden.value.field == unknown.value.field == "repo"
        # outside any request: the process reads everything
        assert tools.select(NAMES, None) == sorted(NAMES)

    def test_a_denial_is_logged_once_and_counted(self, caplog: pytest.LogCaptureFixture) -> None:
        import prometheus_client as prom

        audit = access.Audit()
        registry = prom.CollectorRegistry()
        audit.register(registry)
        who = access.Caller(access.Scope("team-a", ("team-a/*",)), "file_history", audit)
        caplog.set_level(logging.WARNING, logger="codeintel.searcher.access")
        with access.acting_as(who):
            for _ in range(3):
                with pytest.raises(errors.RepoNotFoundError):
                    tools.select(NAMES, ["team-b/web"], audit=True)
            with pytest.raises(errors.RepoNotFoundError):  # unknown: not a denial
                tools.select(NAMES, ["team-b/nope"], audit=True)
        lines = [r.getMessage() for r in caplog.records if "access denied" in r.getMessage()]
        assert lines == ["access denied (scope): identity=team-a tool=file_history repo=team-b/web"]
        count = registry.get_sample_value(
            "codeintel_access_denied_total", {"reason": "scope", "tool": "file_history"}
        )
        assert count == 3


class TestTokensFile:
    def test_hashes_map_to_scopes_and_reload_without_restart(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "tokens.json"
        write_tokens(path, [{"name": "team-a", "sha256": sha("ta"), "repos": ["team-a/*"]}])
        tokens = credentials.TokensFile(path, poll_seconds=0)
        found = tokens.lookup(b"ta")
        assert found is not None and found.identity == "team-a"
        assert tokens.lookup(b"tb") is None
        write_tokens(
            path,
            [
                {"name": "team-a", "sha256": sha("ta"), "repos": ["team-a/mail"]},
                {"name": "team-b", "sha256": sha("tb").upper(), "repos": ["team-b/*"]},
            ],
        )
        found_b = tokens.lookup(b"tb")
        assert found_b is not None and found_b.filter(NAMES) == ["team-b/web"]
        found_a = tokens.lookup(b"ta")
        assert found_a is not None and found_a.filter(NAMES) == ["team-a/mail"]
        # a broken edit keeps the last good file, and says why
        caplog.set_level(logging.ERROR, logger="codeintel.searcher.credentials")
        path.write_text('[{"name": "team-a", "sha256": "abc", "repos": []}]')
        assert tokens.lookup(b"tb") is not None
        assert tokens.error is not None and "64 hex digits" in tokens.error
        assert any("keeping the last good one" in r.getMessage() for r in caplog.records)
        # revoking works once the file is good again
        write_tokens(path, [{"name": "team-a", "sha256": sha("ta"), "repos": ["team-a/*"]}])
        assert tokens.lookup(b"tb") is None and tokens.error is None

    @pytest.mark.parametrize(
        ("rows", "says"),
        [
            ({"name": "x"}, "JSON list"),
            ([{"name": "", "sha256": "0" * 64, "repos": []}], "`name`"),
            ([{"name": "a", "sha256": "zz", "repos": []}], "64 hex digits"),
            ([{"name": "a", "sha256": "0" * 64, "repos": "team-a/*"}], "list of globs"),
            ([{"name": "a", "sha256": "0" * 64, "repos": ["!team-a"]}], "repos"),
            ([{"name": "a", "sha256": "0" * 64, "repo": []}], "unknown keys"),
            (
                [
                    {"name": "a", "sha256": "0" * 64, "repos": []},
                    {"name": "b", "sha256": "0" * 64, "repos": []},
                ],
                "twice",
            ),
        ],
    )
    def test_a_bad_file_is_refused_at_start_naming_the_entry(
        self, tmp_path: Path, rows: object, says: str
    ) -> None:
        path = tmp_path / "tokens.json"
        path.write_text(json.dumps(rows))
        with pytest.raises(errors.ConfigError, match=says):
            credentials.TokensFile(path)

    def test_a_missing_file_is_refused_at_start(self, tmp_path: Path) -> None:
        with pytest.raises(errors.ConfigError, match="does not exist"):
            credentials.TokensFile(tmp_path / "nope.json")


class TestGate:
    async def test_the_shared_token_reads_everything_and_files_scope_the_rest(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "tokens.json"
        write_tokens(path, [{"name": "team-a", "sha256": sha("ta"), "repos": ["team-a/*"]}])
        gate = credentials.Gate.from_settings(
            ServerSettings(api_token="shared", tokens_file=str(path))
        )
        everything = await gate.authenticate(b"shared")
        assert everything is not None and everything.everything
        team = await gate.authenticate(b"ta")
        assert team is not None and not team.everything
        assert await gate.authenticate(b"shared2") is None
        assert await gate.authenticate(None) is None
        assert await gate.authenticate(b"") is None

    async def test_without_credentials_configured_the_server_is_open(self) -> None:
        gate = credentials.Gate.from_settings(ServerSettings())
        found = await gate.authenticate(None)
        assert found is not None and found.everything and not gate.required
