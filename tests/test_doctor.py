"""``codeintel doctor`` reports what runs here, check by check."""

from __future__ import annotations

import json

from codeintel.cli import main
from servers import refused_url


def test_reports_cpu_faiss_git_and_a_missing_store(tmp_path, capsys):
    with refused_url() as dead:
        code = main(
            [
                "doctor",
                "--json",
                "--store",
                str(tmp_path / "nothing"),
                "--embedder",
                "openai",
                "--embed-url",
                dead,
                "--embed-model",
                "m",
            ]
        )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False
    assert report["git"]["ok"] and report["git"]["version"].startswith("git version")
    assert report["faiss"]["gpus"] == 0 and report["faiss"]["path"] == "cpu"
    assert report["embedder"]["ok"] is False and dead in report["embedder"]["error"]
    assert report["store"] == {
        "ok": True,
        "path": str(tmp_path / "nothing"),
        "generation": None,
        "note": "no store yet",
    }


def test_healthy_machine_passes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CODEINTEL_EMBEDDER_MAX_RETRIES", "0")
    assert main(["doctor", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[ok  ] embedder: kind=local" in out and "dim=384" in out
    assert out.rstrip().endswith("all checks passed")


def test_names_the_backend_that_embeds(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CODEINTEL_EMBEDDER_MAX_RETRIES", "0")
    monkeypatch.setenv("CODEINTEL_EMBEDDER_BACKEND", "torch")
    assert main(["doctor", "--json", "--store", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["embedder"]["backend"] == "torch"
    monkeypatch.setenv("CODEINTEL_EMBEDDER_BACKEND", "auto")
    assert main(["doctor", "--store", str(tmp_path)]) == 0
    assert "backend=onnx, dim=384" in capsys.readouterr().out
