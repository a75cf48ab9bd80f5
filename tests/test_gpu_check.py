"""benchmarks/gpu_check.sh's CPU dry run: the very same script at tiny sizes, as on the GPU machine's image
(no `datasets`, `lm_eval` or `vllm`, no fonts, no fortune files). It checks that every step's JSON and the
table appear, not the numbers; and that every pgt module imports without those packages."""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, cached_artifact, code_hash

GPU_IMAGE = Path(__file__).parent / "gpu_image"  # its sitecustomize hides datasets, lm_eval and vllm
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))
import gpu_check  # noqa: E402
from gpu_image.sitecustomize import MISSING  # noqa: E402


def _image_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment as the GPU machine's: hidden packages, no font, no fortunes."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(GPU_IMAGE), str(REPO / "src")]),
        "PGT_FONT": str(tmp_path / "no-font.hex"),
        "PGT_FORTUNES_DIR": str(tmp_path / "no-fortunes"),
        "PY": sys.executable,
    }


@pytest.fixture(scope="module")
def prepared(substrate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`gpu_check.py prepare --tiny` (the smoke-scale study's inputs), built once per version of the code."""
    made_by = inspect.getsource(gpu_check.prepare) + repr(gpu_check.SIZES["tiny"].study_scale)
    key = hashlib.sha256((code_hash("study", "substrate", "data", "corpus") + made_by).encode())

    def build(out: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "prepare",
                "--tiny",
                "--substrate",
                str(substrate_dir),
                "--out",
                str(out),
                "--build",
                str(tmp_path_factory.mktemp("prepare")),
            ],
            env=env,
            check=True,
        )

    return cached_artifact("gpu-check-tiny", key.hexdigest()[:16], build)


def _run(prepared: Path, out: Path, tmp_path: Path, *options: str) -> str:
    result = subprocess.run(
        [
            "bash",
            str(REPO / "benchmarks" / "gpu_check.sh"),
            "--tiny",
            "--device",
            "cpu",
            "--prepared",
            str(prepared),
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
            *options,
        ],
        env=_image_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_every_pgt_module_imports_without_the_packages_the_gpu_image_lacks(tmp_path: Path) -> None:
    check = (
        "import importlib, pkgutil, sys, pgt\n"
        "names = [m.name for m in pkgutil.walk_packages(pgt.__path__, 'pgt.') if m.name != 'pgt.__main__']\n"
        "for name in names: importlib.import_module(name)\n"
        "from pgt.cli import main\n"
        "for command in ['study', 'generate', 'grow', 'eval', 'data']:\n"
        "    try: main([command, '--help'])\n"
        "    except SystemExit as exc: assert exc.code == 0\n"
        f"assert not [m for m in sys.modules if m.partition('.')[0] in {MISSING!r}]\n"
        f"try:\n    import {MISSING[0]}\nexcept ModuleNotFoundError:\n    print('hidden')\n"
    )
    result = subprocess.run([sys.executable, "-c", check], env=_image_env(tmp_path), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.endswith("hidden\n")  # the packages really were unimportable


def test_the_dry_run_writes_each_step_and_prints_the_table_last(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = _run(prepared, out, tmp_path, "--steps", "machine", "growth", "generate")
    for step in ("machine", "growth", "generate"):
        record = gpu_check.StepRecord.load(out / f"{gpu_check.STEPS.index(step) + 1:02d}-{step}.json")
        assert record.status == "ok", record.notes
        assert (out / "logs" / f"{gpu_check.STEPS.index(step) + 1:02d}-{step}.log").is_file()
    growth = gpu_check.StepRecord.load(out / "02-growth.json").figures
    assert {(v["kind"], v["compile"]) for v in growth["variants"]} == {
        ("growth", False),
        ("full", False),
        ("growth", True),
        ("full", True),
    }
    assert set(gpu_check.StepRecord.load(out / "03-generate.json").figures["batches"]) == {"1", "4"}
    summary = gpu_check.Summary.load(out / "summary.json")
    assert [row[0] for row in summary.rows] == ["machine", "growth", "generate"]
    assert {t["verdict"].split()[0] for t in summary.targets} <= {"pass", "miss"}  # every target measured
    table = (out / "summary.md").read_text(encoding="utf-8")
    assert stdout.rstrip().endswith(table.rstrip())  # the last thing printed


@pytest.mark.slow
def test_the_dry_run_study_runs_on_the_prepared_inputs(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(prepared, out, tmp_path, "--steps", "study", "--families", "embeddings")
    record = gpu_check.StepRecord.load(out / "04-study.json")
    assert record.status == "ok", record.notes
    assert record.figures["families"] == ["embeddings"]
    assert record.figures["verdicts"] and {v["family"] for v in record.figures["verdicts"]} == {"embeddings"}
    assert record.figures["sizing"]["measured_flops_per_s"] is None  # no growth step in this run: assumed
    assert (out / "study" / "report.md").is_file() and (out / "study" / "study.json").is_file()
    assert "| study | ok |" in (out / "summary.md").read_text(encoding="utf-8")
