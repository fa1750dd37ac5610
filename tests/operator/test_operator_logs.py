"""``codeintel operator`` as the chart runs it logs one JSON object a line, each line once.

Runs the real command in a subprocess, logged in with a kubeconfig to the
emulated API server, and reads what it writes until it has started.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from operator_harness import emulated_cluster

pytestmark = pytest.mark.slow


async def test_json_logs_are_one_object_a_line_each_once(tmp_path: Path) -> None:
    async with emulated_cluster() as cluster:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "e", "cluster": {"server": cluster.server}}],
                    "users": [{"name": "u", "user": {}}],
                    "contexts": [{"name": "e", "context": {"cluster": "e", "user": "u"}}],
                    "current-context": "e",
                }
            )
        )
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HOME": str(tmp_path),
            "CODEINTEL_OPERATOR_LOG_FORMAT": "json",
        }
        env.pop("CODEINTEL_LOG_FORMAT", None)  # the chart sets only the operator's format
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "codeintel.cli",
            "operator",
            "--all-namespaces",
            "--standalone",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            while not any("authentication has finished" in line for line in lines):
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                assert line, f"the operator exited: {lines}"
                lines.append(line.decode().rstrip("\n"))
        finally:
            proc.terminate()
            await proc.wait()
    messages = []
    for line in lines:
        assert line.startswith("{"), f"not a JSON object: {line!r}"
        messages.append(json.loads(line)["message"])
    assert len(messages) == len(set(messages)), messages
