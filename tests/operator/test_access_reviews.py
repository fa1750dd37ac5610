"""A pool's Kubernetes-native access: TokenReview + SubjectAccessReview on the emulated API server."""

from __future__ import annotations

from pathlib import Path

import httpx
import kmock
import pytest
from kube_emulator import ClusterEmulator, make_emulator

from codeintel.core import errors
from codeintel.searcher import credentials, kubeauth

NAMES = ["team-a/billing", "team-a/mail", "team-b/web", "team-c/docs"]
ALICE = "system:serviceaccount:team-a:agent"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cluster(emulator: ClusterEmulator) -> None:
    emulator.reviewers.add("router-sa-token")
    emulator.users["alice-token"] = {
        "username": ALICE,
        "uid": "u-1",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:team-a"],
    }
    emulator.grants[ALICE] = {"team-a"}


def _reviewer(url: str, token_file: Path, clock: Clock) -> kubeauth.KubeReviewer:
    return kubeauth.KubeReviewer(
        httpx.AsyncClient(base_url=url),
        token_file,
        allow_ttl=30.0,
        deny_ttl=5.0,
        max_entries=100,
        clock=clock,
    )


async def test_reviews_allow_per_namespace_and_cache_denials_shorter(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("router-sa-token\n")
    clock = Clock()
    async with make_emulator() as emulator, kmock.Server(emulator) as server:
        _cluster(emulator)
        reviewer = _reviewer(str(server.url).rstrip("/"), token_file, clock)
        try:
            scope = await reviewer.scope(b"alice-token", NAMES)
            assert scope is not None and scope.identity == ALICE
            assert scope.filter(NAMES) == ["team-a/billing", "team-a/mail"]
            assert emulator.reviews == {"TokenReview": 1, "SubjectAccessReview": len(NAMES)}
            assert await reviewer.scope(b"stolen-token", NAMES) is None
            assert emulator.reviews["TokenReview"] == 2

            # within both TTLs: answered from the cache
            for _ in range(10):
                again = await reviewer.scope(b"alice-token", NAMES)
                assert again is not None and again.filter(NAMES) == scope.filter(NAMES)
                assert await reviewer.scope(b"stolen-token", NAMES) is None
            assert emulator.reviews == {"TokenReview": 2, "SubjectAccessReview": len(NAMES)}
            assert reviewer.hit_rate > 0.8

            # a grant shows once the denial expires (5 s), before any allowal does (30 s)
            emulator.grants[ALICE].add("team-b")
            clock.now += 6
            widened = await reviewer.scope(b"alice-token", NAMES)
            assert widened is not None
            assert widened.filter(NAMES) == ["team-a/billing", "team-a/mail", "team-b/web"]
            # only the two denials were asked again (and the unknown token, when used)
            assert emulator.reviews["SubjectAccessReview"] == len(NAMES) + 2
            assert emulator.reviews["TokenReview"] == 2

            # a revoked grant holds until the allowal expires, then goes
            emulator.grants[ALICE] = {"team-b"}
            clock.now += 31
            narrowed = await reviewer.scope(b"alice-token", NAMES)
            assert narrowed is not None and narrowed.filter(NAMES) == ["team-b/web"]
        finally:
            await reviewer.aclose()


async def test_a_router_without_rbac_fails_closed_and_caches_nothing(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("some-other-token")
    async with make_emulator() as emulator, kmock.Server(emulator) as server:
        _cluster(emulator)
        reviewer = _reviewer(str(server.url).rstrip("/"), token_file, Clock())
        try:
            assert await reviewer.scope(b"alice-token", NAMES) is None
            assert len(reviewer.users) == 0 and len(reviewer.decisions) == 0
            # once RBAC is fixed, the same caller gets in without waiting for a TTL
            token_file.write_text("router-sa-token")
            scope = await reviewer.scope(b"alice-token", NAMES)
            assert scope is not None and scope.filter(NAMES) == ["team-a/billing", "team-a/mail"]
        finally:
            await reviewer.aclose()


async def test_the_gate_asks_the_reviewer_after_the_shared_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("router-sa-token")
    async with make_emulator() as emulator, kmock.Server(emulator) as server:
        _cluster(emulator)
        gate = credentials.Gate(
            "pool-token", reviewer=_reviewer(str(server.url).rstrip("/"), token_file, Clock())
        )
        gate.names = lambda: NAMES
        try:
            shared = await gate.authenticate(b"pool-token")
            assert shared is not None and shared.everything
            assert emulator.reviews["TokenReview"] == 0  # the shared token never leaves
            alice = await gate.authenticate(b"alice-token")
            assert alice is not None and alice.filter(NAMES) == ["team-a/billing", "team-a/mail"]
            assert await gate.authenticate(b"nobody") is None
        finally:
            await gate.aclose()


def test_a_denial_may_not_outlive_an_allowal() -> None:
    with pytest.raises(errors.ConfigError, match="may not exceed"):
        kubeauth.KubeReviewer(httpx.AsyncClient(), None, allow_ttl=5.0, deny_ttl=30.0)


def test_the_cache_is_bounded() -> None:
    clock = Clock()
    cache: kubeauth.TTLCache[bool] = kubeauth.TTLCache(3, clock)
    for i in range(10):
        cache.put(i, True, 30.0)
    assert len(cache) == 3 and cache.get(0) is None and cache.get(9) is True


async def test_a_request_is_reviewed_for_what_it_names_hidden_and_missing_alike(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("router-sa-token")
    async with make_emulator() as emulator, kmock.Server(emulator) as server:
        _cluster(emulator)
        gate = credentials.Gate(
            reviewer=_reviewer(str(server.url).rstrip("/"), token_file, Clock())
        )
        gate.names = lambda: NAMES
        try:
            one = await gate.authenticate(b"alice-token", ["team-a/billing"])
            assert one is not None and one.filter(NAMES) == ["team-a/billing"]
            assert emulator.reviews["SubjectAccessReview"] == 1
            # a hidden repository and one that does not exist cost one review each
            hidden = await gate.authenticate(b"alice-token", ["team-b/web"])
            missing = await gate.authenticate(b"alice-token", ["team-b/nope"])
            assert hidden is not None and missing is not None
            assert hidden.filter(NAMES) == missing.filter(NAMES) == []
            assert emulator.reviews["SubjectAccessReview"] == 3
            globbed = await gate.authenticate(b"alice-token", ["team-a/*"])
            assert globbed is not None and globbed.filter(NAMES) == [
                "team-a/billing",
                "team-a/mail",
            ]
            assert emulator.reviews["SubjectAccessReview"] == 4  # billing was cached
        finally:
            await gate.aclose()


def test_the_guard_reads_the_repositories_a_request_names() -> None:
    from codeintel.searcher import app

    assert app._wanted("/v1/search_text", b'{"pattern": "x", "repos": ["a/*", "b/c"]}') == [
        "a/*",
        "b/c",
    ]
    assert app._wanted("/v1/blame_range", b'{"repo": "a/b", "path": "x"}') == ["a/b"]
    assert app._wanted("/v1/list_repos", b"{}") is None
    assert app._wanted("/v1/list_repos", b"{not json") is None
    call = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "file_history", "arguments": {"repo": "a/b"}}}'
    assert app._wanted("/mcp", call) == ["a/b"]
    assert app._wanted("/mcp", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}') == []
