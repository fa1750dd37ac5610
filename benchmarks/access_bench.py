"""What access control costs a request: scope checks at 200 repositories, and the review cache.

Part 1, scope: the work a scoped request adds over an unscoped one, per request, is
(a) resolving the bearer token against a tokens file (sha256, constant-time compare
with every entry) and (b) the scope filter inside ``tools.select`` over every
served repository. Both are timed on the real code: ``Gate.authenticate`` then
``tools.select(names, patterns)`` as a caller with 1, 2 or 3 globs, against the same
``tools.select`` as the process (no scope), interleaved, many repetitions; p50 and
p99 of the difference. Nothing but Python runs, so it is a CPU figure; say the load.

Part 2, reviews: a steady workload of agents (identities), each naming a few
repositories per request (nine requests in ten within its own team's ten repositories, which it may read), one
request every ``--interval`` simulated seconds, against a
``KubeReviewer`` whose API server answers through ``httpx.MockTransport`` (counted;
the cache, not the server, is measured) with the default TTLs (30 s allow, 5 s deny)
on a simulated clock: the share of decisions answered from the cache.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import write_results
from codeintel.core.settings import ServerSettings
from codeintel.searcher import access, credentials, kubeauth, tools


def _names(n: int) -> list[str]:
    return [f"team-{i % 20:02d}/repo-{i:03d}" for i in range(n)]


PATTERNS = {
    1: ("team-03/*",),
    2: ("team-03/*", "team-07/repo-1*"),
    3: ("team-03/*", "team-07/repo-1*", "*/repo-19?"),
}


def _time_scope(names: list[str], globs: int, tokens: int, reps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokens.json"
        rows = [
            {
                "name": f"caller-{i}",
                "sha256": hashlib.sha256(f"token-{i}".encode()).hexdigest(),
                "repos": list(PATTERNS[globs]),
            }
            for i in range(tokens)
        ]
        path.write_text(json.dumps(rows))
        gate = credentials.Gate.from_settings(
            ServerSettings(tokens_file=str(path), tokens_poll_seconds=1.0)
        )
        token = f"token-{tokens - 1}".encode()
        loop = asyncio.new_event_loop()
        added: list[float] = []
        cold: list[float] = []
        for _ in range(reps):
            # interleaved: the unscoped baseline, then the scoped request, each timed alone
            t0 = time.perf_counter()
            tools.select(names, None)
            base = time.perf_counter() - t0
            t0 = time.perf_counter()
            scope = loop.run_until_complete(gate.authenticate(token))
            assert scope is not None
            with access.acting_as(access.Caller(scope, "search_text", gate.audit)):
                allowed = tools.select(names, None)
            scoped = time.perf_counter() - t0
            added.append(scoped - base)
            # what a shard does per request: decode the forwarded scope (a new Scope,
            # nothing remembered yet) and filter with it
            header = access.encode(scope)
            assert header is not None
            t0 = time.perf_counter()
            with access.acting_as(access.Caller(access.decode(header), "search_text")):
                tools.select(names, None)
            cold.append(time.perf_counter() - t0 - base)
        loop.close()
    added.sort()
    cold.sort()
    return {
        "part": "scope",
        "repos": len(names),
        "globs": globs,
        "tokens_in_file": tokens,
        "allowed": len(allowed),
        "p50_added_ms": round(statistics.median(added) * 1000, 4),
        "p99_added_ms": round(added[int(len(added) * 0.99)] * 1000, 4),
        "shard_p50_added_ms": round(statistics.median(cold) * 1000, 4),
        "shard_p99_added_ms": round(cold[int(len(cold) * 0.99)] * 1000, 4),
        "reps": reps,
    }


def _review_server(counts: dict[str, int], grants: dict[str, set[str]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == kubeauth.TOKEN_REVIEWS:
            counts["TokenReview"] += 1
            user = body["spec"]["token"]
            body["status"] = {"authenticated": True, "user": {"username": user, "groups": []}}
        else:
            counts["SubjectAccessReview"] += 1
            spec = body["spec"]
            ns = spec["resourceAttributes"]["namespace"]
            body["status"] = {"allowed": ns in grants.get(spec["user"], set())}
        return httpx.Response(201, json=body)

    return httpx.MockTransport(handle)


def _review_hit_rate(
    names: list[str], agents: int, per_request: int, interval: float, seconds: float
) -> dict[str, Any]:
    counts = {"TokenReview": 0, "SubjectAccessReview": 0}
    rng = random.Random(7)
    grants = {f"agent-{a}": {f"team-{a % 20:02d}", "team-19"} for a in range(agents)}
    clock = [0.0]
    reviewer = kubeauth.KubeReviewer(
        httpx.AsyncClient(base_url="https://api", transport=_review_server(counts, grants)),
        None,
        clock=lambda: clock[0],
    )
    requests = 0

    async def run() -> None:
        nonlocal requests
        while clock[0] < seconds:
            for a in range(agents):
                # each agent works in its team's repositories, one request in ten elsewhere
                own = [n for n in names if n.startswith(f"team-{a % 20:02d}/")]
                pool = own if rng.random() < 0.9 else names
                picks = rng.sample(pool, min(per_request, len(pool)))
                await reviewer.scope(f"agent-{a}".encode(), picks)
                requests += 1
            clock[0] += interval
        await reviewer.aclose()

    asyncio.run(run())
    return {
        "part": "reviews",
        "repos": len(names),
        "agents": agents,
        "repos_per_request": per_request,
        "request_interval_s": interval,
        "simulated_s": seconds,
        "requests": requests,
        "token_reviews": counts["TokenReview"],
        "access_reviews": counts["SubjectAccessReview"],
        "cache_hit_rate": round(reviewer.hit_rate, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3000)
    parser.add_argument("--tokens", type=int, default=50, help="entries in the tokens file")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    names = _names(args.repos)
    rows = [_time_scope(names, g, args.tokens, args.reps) for g in (1, 2, 3)]
    for per in (1, 5):
        rows.append(_review_hit_rate(names, args.agents, per, args.interval, args.seconds))
    meta = {
        "load": os.getloadavg(),
        "cpus": os.cpu_count(),
        "note": "scope rows: time added per request (tokens-file lookup + scope filter in "
        "tools.select) over the unscoped select, interleaved; review rows: simulated clock",
    }
    write_results("access", rows, meta)
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
