"""run_meta's machine line names the GPUs that nvidia-smi lists, and none without it."""

import importlib.util
import os
import stat

from conftest import ROOT

_PATH = ROOT / "benchmarks" / "pipeline.py"  # not part of the package
_spec = importlib.util.spec_from_file_location("pipeline", _PATH)
pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline)
gpu_models, run_meta = pipeline.gpu_models, pipeline.run_meta


def _fake_smi(dir, body: str) -> None:
    path = dir / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_machine_line_with_and_without_gpus(tmp_path, monkeypatch):
    _fake_smi(tmp_path, 'echo "NVIDIA Fake 80GB"\necho "NVIDIA Fake 80GB"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert gpu_models() == "2x NVIDIA Fake 80GB"
    assert ", 2x NVIDIA Fake 80GB, " in run_meta()["machine"]

    _fake_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2\nexit 9\n")  # driver missing: no GPU claimed
    assert gpu_models() is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_models() is None
    assert "NVIDIA" not in run_meta()["machine"]
