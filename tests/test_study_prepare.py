"""A prepared study (`pgt.study.runner.prepare_study`): built where the font and corpus are, reused where they
are not. Its trimmed substrates are reused without their full parents, and a run may change the budgets,
not the inputs, until something has trained."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from pgt.errors import PgtError
from pgt.study.runner import PLAN_FILE, StudyOptions, StudyPlan, prepare_study
from pgt.study.scales import SCALES
from pgt.substrate.store import SUBSTRATE_FILE

SMOKE = dataclasses.replace(SCALES["smoke"], device="cpu")


def test_a_prepared_study_needs_neither_its_parent_nor_its_budgets(substrate_dir: Path, tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    shutil.copytree(substrate_dir, parent)
    out = tmp_path / "study"
    options = StudyOptions(out=out, scale=SMOKE, seeds=2, families=("growth",), substrate=parent)
    prepare_study(options)
    assert (out / "substrate" / SUBSTRATE_FILE).is_file()
    assert (out / "data" / "glyph-all").is_dir()
    assert not (out / "runs").exists() and not (out / "sweeps").exists()  # nothing trained

    shutil.rmtree(parent)  # as on the GPU machine: the full substrate stays behind
    bigger = dataclasses.replace(SMOKE, growth_tokens=4 * SMOKE.growth_tokens, sweep_lrs=SMOKE.sweep_lrs[:1])
    prepare_study(dataclasses.replace(options, scale=bigger))  # new budgets, the trimmed substrate reused
    assert StudyPlan.load(out / PLAN_FILE).scale["growth_tokens"] == bigger.growth_tokens

    with pytest.raises(PgtError, match="other settings"):  # the inputs never change under a prepared study
        prepare_study(dataclasses.replace(options, scale=dataclasses.replace(bigger, heldout=SMOKE.heldout + 1)))
    (out / "runs").mkdir()  # once something trained, its budgets are fixed
    with pytest.raises(PgtError, match="other settings"):
        prepare_study(dataclasses.replace(options, scale=SMOKE))
