"""The one way codeintel runs git, hardened once for every caller.

Mirroring, tree listing, blobs, diffs, blame, log and ``git archive`` all start
git through :func:`run` or :func:`start`, which add:

* ``safe.directory=*``: in the cluster the indexer Job writes the store and the
  searchers read it as another uid; without it git refuses the repository
  ("dubious ownership") for some commands and not others.
* ``core.quotepath=off``: non-ASCII paths come back as UTF-8, not octal escapes.
* no prompts (``GIT_TERMINAL_PROMPT=0``, empty askpass, ssh ``BatchMode``): a
  missing credential fails the Job instead of hanging it.
* ``LC_ALL=C``: the messages we match (``has only N lines``) are git's own.
* credentials through an inline helper reading the child's environment, so
  nothing secret is written to disk or shown in ``ps``.

Refs and commits that reach git from outside pass :func:`check_ref` (nothing
starting with ``-``), and callers put ``--end-of-options`` before them and
``--`` before paths, so no argument is ever read as an option.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from codeintel.core import errors

TIMEOUT_SECONDS = 30.0
"""Default bound on one git call (blame, log, ls-tree, diff): a pathological history must
not pin a worker forever. Clone and fetch pass ``timeout=None``: their time grows with the
repository."""

CONFIG: tuple[str, ...] = (
    "-c",
    "safe.directory=*",
    "-c",
    "core.quotepath=off",
    "-c",
    "log.showSignature=false",
)

_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'echo "username=${CODEINTEL_GIT_USERNAME}"; echo "password=${CODEINTEL_GIT_PASSWORD}"; }; f'
)


def require_git() -> str:
    """The git binary's path, or a ConfigError saying how to get one."""
    found = shutil.which("git")
    if not found:
        raise errors.ConfigError("the 'git' binary is required but was not found on PATH")
    return found


def check_ref(ref: str) -> str:
    """``ref`` unchanged, or a GitError when git could read it as an option or as nothing."""
    if not ref or ref.startswith("-") or "\0" in ref:
        raise errors.GitError(f"not a valid ref: {ref!r}")
    return ref


def argv(*args: str, credentials: tuple[str, str] | None = None) -> list[str]:
    """The full command line for ``git args…``: hardened config first, then credentials."""
    helper: tuple[str, ...] = ()
    if credentials and any(credentials):
        helper = ("-c", "credential.helper=", "-c", f"credential.helper={_CREDENTIAL_HELPER}")
    return ["git", *CONFIG, *helper, *args]


def environment(
    credentials: tuple[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The child's environment: ``base`` (default ``os.environ``) without prompts, in the C locale."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_SSH_COMMAND": env.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
            "LC_ALL": "C",
        }
    )
    if credentials and any(credentials):
        env["CODEINTEL_GIT_USERNAME"], env["CODEINTEL_GIT_PASSWORD"] = credentials
    return env


def short_error(stderr: bytes | str) -> str:
    """git's last two stderr lines, joined: enough to say what failed, short enough for a log line."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-2:]) if lines else "git failed"


def _absolute(cwd: Path | None) -> Path | None:
    """``cwd`` unchanged when absolute (or None); ValueError for a relative one.

    A relative working directory means something different to every caller that
    holds it (and to git, which also sees relative paths in its arguments against
    it): user paths are made absolute at the edge (``Settings``, the CLI), and this
    refuses any that slipped through instead of running git in the wrong place."""
    if cwd is not None and not Path(cwd).is_absolute():
        raise ValueError(f"git needs an absolute working directory, not {str(cwd)!r}")
    return cwd


def run(
    cwd: Path | None,
    *args: str,
    timeout: float | None = TIMEOUT_SECONDS,
    credentials: tuple[str, str] | None = None,
) -> bytes:
    """Run ``git args…`` in ``cwd`` and return stdout; GitError with git's message on failure."""
    cwd = _absolute(cwd)
    try:
        proc = subprocess.run(
            argv(*args, credentials=credentials),
            cwd=cwd,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=environment(credentials),
        )
    except subprocess.TimeoutExpired as e:
        raise errors.GitError(f"git {args[0]} timed out after {timeout:.0f}s") from e
    except OSError as e:
        raise errors.GitError(f"cannot run git in {cwd}: {e}") from e
    if proc.returncode != 0:
        raise errors.GitError(short_error(proc.stderr))
    return proc.stdout


def start(cwd: Path, *args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``git args…`` in ``cwd`` with stdout (and stderr) piped, for streaming callers."""
    _absolute(cwd)
    try:
        return subprocess.Popen(
            argv(*args),
            cwd=cwd,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(),
        )
    except OSError as e:
        raise errors.GitError(f"cannot run git in {cwd}: {e}") from e
