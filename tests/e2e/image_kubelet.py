"""A kubelet stand-in that runs a pod's container inside its built image, with buildah.

No container engine runs on this machine: ``buildah from IMAGE`` makes a
container from local storage and ``buildah run --isolation chroot`` runs a
command in it on the host's network. :class:`ImagePod` turns a pod spec the
operator rendered into that command line as a kubelet would: the container's
``command`` replaces the image's entrypoint, ``args`` its CMD, plain ``env``
values are set, the user comes from the security contexts, each volume mount
becomes a bind mount of a host directory at its ``mountPath`` (``:ro`` when the
mount is read-only), and ``terminationMessagePath`` is a host file. One
liberty: chroot isolation binds the host's ``/dev`` read-only and cannot mount a
file inside it, so the termination file is mounted at :data:`TERMINATION_HERE`
and every arg or env value naming ``terminationMessagePath`` is rewritten to it.

Volumes are prepared as Kubernetes would: the claim and each emptyDir are
directories owned by the pod's ``fsGroup``. After the container ran,
:meth:`ImagePod.root_writes` lists what it wrote to its own root filesystem
(the container's overlay upper layer), which must stay empty apart from the
mount points: the pods run with ``readOnlyRootFilesystem``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# What buildah itself creates in a container's root to run a command in it.
RUNTIME_PATHS = {"etc", "etc/hosts", "etc/resolv.conf", "etc/hostname", "run", "run/.containerenv"}
# Where the termination message file is mounted instead of /dev (see the module docstring).
TERMINATION_HERE = "/termination-log"
# FallbackToLogsOnError: the end of the log, at most 2048 bytes, when the file is empty.
LOG_TAIL_BYTES = 2048


def buildah(*args: str) -> str:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def image_present(image: str) -> bool:
    if shutil.which("buildah") is None:
        return False
    found = subprocess.run(
        ["buildah", "inspect", "--type", "image", image], capture_output=True, check=False
    )
    return found.returncode == 0


@dataclasses.dataclass
class Volume:
    """A host directory standing in for a pod volume."""

    host: Path


@dataclasses.dataclass
class Terminated:
    """How a Job's container ended: its exit code and the message the kubelet reports."""

    exit_code: int
    message: str
    log: str


class ImagePod:
    """One pod's container, run in the image its spec names."""

    def __init__(
        self,
        pod_spec: Mapping[str, Any],
        claims: Mapping[str, Path],
        workdir: Path,
        *,
        replace_args: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        extra_mounts: Mapping[Path, str] | None = None,
    ) -> None:
        """``claims`` maps claim names to host directories; ``replace_args`` rewrites
        the values of some flags (``--flag VALUE`` or ``--flag=VALUE``: the one thing
        a shared network forces, ports). ``extra_env`` and ``extra_mounts`` (read-only)
        stand in for what a cluster adds to a pod, such as its service account."""
        assert len(pod_spec["containers"]) == 1, "one container per pod"
        self.pod_spec = pod_spec
        self.container: dict[str, Any] = pod_spec["containers"][0]
        self.image: str = self.container["image"]
        self.workdir = workdir
        self.replace_args = dict(replace_args or {})
        self.extra_env = dict(extra_env or {})
        self.extra_mounts = dict(extra_mounts or {})
        self.security = {
            **(pod_spec.get("securityContext") or {}),
            **(self.container.get("securityContext") or {}),
        }
        self.fs_group = int((pod_spec.get("securityContext") or {}).get("fsGroup", 0))
        self.volumes = self._volumes(claims)
        self.termination_file: Path | None = None
        self.ctr: str | None = None

    def _volumes(self, claims: Mapping[str, Path]) -> dict[str, Volume]:
        volumes: dict[str, Volume] = {}
        for volume in self.pod_spec.get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                host = claims[volume["persistentVolumeClaim"]["claimName"]]
            elif "emptyDir" in volume:
                host = self.workdir / f"emptydir-{volume['name']}"
            else:
                raise AssertionError(f"volume kind not played here: {volume}")
            host.mkdir(parents=True, exist_ok=True)
            self._own(host)
            volumes[volume["name"]] = Volume(host)
        return volumes

    def _own(self, path: Path) -> None:
        """What the kubelet does with ``fsGroup``: the group owns it, setgid on directories."""
        os.chown(path, -1, self.fs_group)
        if path.is_dir():
            path.chmod(0o2775)
            for child in path.rglob("*"):
                os.chown(child, -1, self.fs_group, follow_symlinks=False)
        else:
            path.chmod(0o664)

    def argv(self) -> list[str]:
        """The ``buildah run`` command line of the container."""
        assert self.ctr is not None
        user = self.security.get("runAsUser")
        assert user is not None and self.security.get("runAsNonRoot"), self.security
        group = self.security.get("runAsGroup", 0)
        argv = ["buildah", "run", "--isolation", "chroot", "--user", f"{user}:{group}"]
        if self.container.get("workingDir"):
            argv += ["--workingdir", self.container["workingDir"]]
        termination = self.container.get("terminationMessagePath")

        def here(value: str) -> str:
            return TERMINATION_HERE if termination and value == termination else value

        for item in self.container.get("env") or []:
            assert "value" in item, f"only plain env values are played here: {item}"
            argv += ["--env", f"{item['name']}={here(item['value'])}"]
        for name, value in self.extra_env.items():
            argv += ["--env", f"{name}={value}"]
        for host, path in self.extra_mounts.items():
            argv += ["--volume", f"{host}:{path}:ro"]
        for mount in self.container.get("volumeMounts") or []:
            host = self.volumes[mount["name"]].host
            suffix = ":ro" if mount.get("readOnly") else ""
            argv += ["--volume", f"{host}:{mount['mountPath']}{suffix}"]
        if termination:
            self.termination_file = self.workdir / "termination-log"
            self.termination_file.write_text("")
            os.chown(self.termination_file, int(user), int(group))
            argv += ["--volume", f"{self.termination_file}:{TERMINATION_HERE}"]
        args = [here(arg) for arg in self.container.get("args") or []]
        for flag, value in self.replace_args.items():
            if flag in args:
                args[args.index(flag) + 1] = value
            args = [f"{flag}={value}" if a.startswith(f"{flag}=") else a for a in args]
        return [*argv, self.ctr, "--", *self.container["command"], *args]

    @contextlib.contextmanager
    def created(self) -> Iterator[ImagePod]:
        """The container exists (``buildah from``) inside the block and is removed after."""
        self.ctr = buildah("from", "--pull=never", "--quiet", self.image)
        try:
            yield self
        finally:
            buildah("rm", self.ctr)
            self.ctr = None

    def run_to_end(self, timeout: float = 600) -> Terminated:
        """Run a Job's container to its end; the message as the kubelet would report it."""
        done = subprocess.run(
            self.argv(), capture_output=True, text=True, timeout=timeout, check=False
        )
        log = done.stdout + done.stderr
        message = self.termination_file.read_text() if self.termination_file else ""
        if done.returncode != 0 and not message.strip():
            message = log.encode()[-LOG_TAIL_BYTES:].decode(errors="replace")
        return Terminated(done.returncode, message, log)

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        """Start a long-running container (a searcher) in its own process group."""
        with log.open("wb") as out:
            return subprocess.Popen(
                self.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def root_writes(self) -> list[str]:
        """Paths the container wrote in its root filesystem, mount points excepted."""
        assert self.ctr is not None
        merged = Path(buildah("mount", self.ctr))
        try:
            upper = merged.parent / "diff"
            assert upper.is_dir(), f"no overlay upper layer next to {merged}"
            mounts = {m["mountPath"].strip("/") for m in self.container.get("volumeMounts") or []}
            mounts |= {path.strip("/") for path in self.extra_mounts.values()}
            if self.container.get("terminationMessagePath"):
                mounts.add(TERMINATION_HERE.strip("/"))
            allowed = RUNTIME_PATHS | mounts | {p.rsplit("/", 1)[0] for p in mounts if "/" in p}
            written = sorted(str(p.relative_to(upper)) for p in upper.rglob("*"))
            return [p for p in written if p not in allowed and p.split("/", 1)[0] not in mounts]
        finally:
            buildah("umount", self.ctr)


def _container_process(buildah_pid: int) -> int | None:
    """The container's first process: the child of ``buildah-chroot-exec`` under ``buildah_pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    for pid, parent in parents.items():
        ancestor = parent
        while ancestor > 1 and ancestor != buildah_pid:
            ancestor = parents.get(ancestor, 0)
        if ancestor != buildah_pid:
            continue
        with contextlib.suppress(OSError):
            if Path(f"/proc/{parent}/cmdline").read_bytes().startswith(b"buildah-chroot-exec"):
                return pid
    return None


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Stop a pod as the kubelet does: SIGTERM to the container's first process (not
    to buildah around it), SIGKILL after ``timeout``. Returns the exit code."""
    if proc.poll() is None:
        pid = _container_process(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
            else:  # it has not started yet, or already ended
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    return int(proc.returncode)
