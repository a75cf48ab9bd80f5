"""`pgt study`: the orchestrator. Every step reuses what a previous run of the same study finished.

OUT/study-plan.json           the settings (a rerun with others is refused; families may differ)
OUT/corpus/                   training JSONL/text per language, the held-out and validation documents
OUT/substrate-full/           the full bvv241-2-3 substrate (unless --substrate names one)
OUT/substrate/                it trimmed to the training text: the glyph arms stand on it
OUT/substrate-{recentred,shuffled,visible,random}/   the embeddings family's other matrices
OUT/data/SUBSTRATE-{all,expert-a,expert-b}/          token data (`pgt data prepare`)
OUT/sweeps/ARM.json, OUT/sweeps/ARM/lr-X/            each arm's learning-rate sweep
OUT/runs/ARM/seed-S/          one normal `pgt grow` run per arm and seed
OUT/logs/                     with --jobs N > 1: each run's lines (`runs-ARM-seed-S.log`, `sweeps-...`)
OUT/runs/merge/seed-S/        the experts' logit mean (`pgt merge`)
OUT/runs/merge-adapter/seed-S/, OUT/runs/merge-tuned/seed-S/   `pgt merge --mode adapter`, then `pgt tune`
OUT/families/FAMILY.json      a family's state (finished, seconds spent)
OUT/health/SUBSTRATE.json     `pgt substrate inspect` of each matrix on the training data
MODEL/study/ID.json           each model's held-out scores (ID names the held-out text)
OUT/study.json, OUT/report.md the results and the page
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from pgt.errors import PgtError
from pgt.io import refuse_foreign, run_lock
from pgt.model.architecture import check_heads
from pgt.options import available_cpus
from pgt.records import Record
from pgt.study import adapter
from pgt.study.arms import (
    FAMILIES,
    MERGE,
    TUNED,
    Arm,
    Family,
    family_arms,
)
from pgt.study.collect import StudyScoring, say
from pgt.study.corpus import StudyCorpus, parse_corpus_specs, split_corpus
from pgt.study.pool import RunJob, RunPool
from pgt.study.report import write_study_report
from pgt.study.results import (
    StudyResults,
    SweepRecord,
)
from pgt.study.scales import Scale
from pgt.substrate.layout import SMALL_FAMILY
from pgt.substrate.store import SUBSTRATE_FILE, is_substrate

PLAN_FILE = "study-plan.json"
RESULTS_FILE = "study.json"
SWEEP_SEED = 1000  # the sweeps' seed: none of the study's seeds, so no reported run is the one that chose its lr
CONTROL_SEED = 0  # the random and shuffled matrices


@dataclass
class StudyPlan(Record):
    """OUT/study-plan.json: what this study directory is made with."""

    WHAT = "study plan"
    scale: dict
    seeds: int
    corpus: list[str]
    substrate: str | None


@dataclass
class FamilyRun(Record):
    """OUT/families/FAMILY.json."""

    WHAT = "study family state"
    family: str
    finished: bool
    seconds: float  # wall time spent training and scoring it, over all invocations


@dataclass
class StudyOptions:
    out: Path
    scale: Scale
    seeds: int
    families: tuple[Family, ...] = FAMILIES
    corpus: list[str] | None = None
    substrate: Path | None = None
    visible_substrate: Path | None = None  # the substrate's visible-blanks twin, built beforehand
    progress: bool = False


# The scale's fields that shape the corpus split, the substrates and the token data: a prepared study
# (`prepare_study`) keeps them; every other field (budgets, sweeps, seeds) only shapes training.
PREPARED_FIELDS = ("dim", "heldout", "validation", "max_train_documents")


def _trained_anything(out: Path) -> bool:
    return (out / "sweeps").exists() or (out / "runs").exists()


def _check_plan(out: Path, plan: StudyPlan) -> None:
    """Refuse other settings than the study was made with; before anything trained, only the inputs must match."""
    path = out / PLAN_FILE
    if path.is_file():
        saved = StudyPlan.load(path)
        if _trained_anything(out):  # budgets shaped finished runs: everything but the seeds must match
            saved = dataclasses.replace(saved, seeds=plan.seeds)
        else:  # a prepared study: new budgets are fine on the same corpus, substrates and data
            saved = dataclasses.replace(
                saved, seeds=plan.seeds, scale={**plan.scale, **{k: saved.scale.get(k) for k in PREPARED_FIELDS}}
            )
        # compared as JSON (tuples read back as lists); more (or fewer) seeds reuse the rest
        if saved.to_json() != plan.to_json():
            raise PgtError(
                f"{out} holds a study made with other settings (scale, corpus or substrate); "
                "rerun with the same options or choose another --out"
            )
    plan.save(path)


def arm_budget(arm: Arm, scale: Scale) -> tuple[int, int]:
    """(blocks, tokens per stage) of an arm: a baseline's run trains blocks x tokens per stage in one stage."""
    if arm.family == "embeddings":
        return scale.embedding_blocks, scale.embedding_tokens // scale.embedding_blocks
    if arm.family == "growth":
        total = scale.growth_stages * scale.growth_tokens
        return (1, total) if arm.one_block else (scale.growth_stages, scale.growth_tokens)
    return scale.expert_stages, scale.expert_tokens


def growth_settings(
    arm: Arm,
    seed: int,
    scale: Scale,
    substrate: Path,
    data: Path,
    out: Path,
    progress: bool,
    lr: float,
    share: float = 1.0,
) -> dict:
    """The `pgt grow` configuration of one arm and seed: a family's arms share everything but what the arm says."""
    blocks, per_stage = arm_budget(arm, scale)
    tokens_per_step = scale.batch_size * scale.seq_len
    per_stage = max(tokens_per_step, int(per_stage * share) // tokens_per_step * tokens_per_step)
    steps = per_stage // tokens_per_step
    return dict(
        substrate=str(substrate),
        data=str(data),
        out=str(out),
        stages=blocks,
        init=arm.init,
        baseline=arm.baseline,
        tokens_per_stage=per_stage,
        batch_size=scale.batch_size,
        seq_len=scale.seq_len,
        heads=scale.heads,
        lr=lr,
        seed=seed,
        context=max(256, scale.seq_len),
        eval_every=max(1, steps // 2),
        eval_tokens=32 * tokens_per_step,
        checkpoint_every=max(1, steps // 2),
        log_every=max(1, steps // 20),
        lora_from=0,
        device=scale.device,
        compile=scale.compile,
        plot=False,  # the study's page draws every arm's loss from metrics.jsonl
        progress=progress,
    )


def _open_study(options: StudyOptions) -> _Study:
    """Check the plan, split the corpus (or reuse the split); called under the study's lock."""
    scale, out = options.scale, options.out
    languages = parse_corpus_specs(options.corpus)
    where = ("device", "threads", "jobs", "compile")  # how it runs, not what it measures
    sizes = {k: v for k, v in dataclasses.asdict(scale).items() if k not in where}
    if scale.threads is not None:
        import torch

        torch.set_num_threads(scale.threads)
    _check_plan(
        out,
        StudyPlan(
            sizes,
            options.seeds,
            [f"{k}={v}" for k, vs in languages.items() for v in vs],
            str(options.substrate) if options.substrate else None,
        ),
    )
    say(
        f"== corpus: {', '.join(languages)} ({scale.heldout} held-out and {scale.validation} validation "
        "documents per language)"
    )
    corpus = split_corpus(
        languages,
        out / "corpus",
        heldout=scale.heldout,
        validation=scale.validation,
        max_train=scale.max_train_documents,
    )
    return _Study(out, options, corpus)


def prepare_study(options: StudyOptions) -> None:
    """Build what `options.families` need and train nothing: the corpus split, every substrate and token data.

    What needs the font or the corpus's sources is done here, so the study can later run where neither
    exists (the GPU check carries it there without the full-vocabulary substrates: trimmed ones are
    reused without their parents). A run of the prepared study may change every budget, not `PREPARED_FIELDS`.
    """
    options.out.mkdir(parents=True, exist_ok=True)
    with run_lock(options.out):
        study = _open_study(options)
        for family in options.families:
            for arm in family_arms(family):
                study.data(arm.substrate, arm.data)
        if "merging" in options.families:
            study.data("glyph", "all")  # the tuning data


def run_study(options: StudyOptions, command: str = "") -> StudyResults:
    """Run (or resume) the study's families in `options.out`; return the results of every finished family
    (also OUT/study.json and the report)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per loaded model would drown the study's own lines
    out = options.out
    refuse_foreign(out, PLAN_FILE, what="study directory")
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        study = _open_study(options)
        try:
            for family in FAMILIES:
                if family in options.families:
                    study.train(family)
        finally:
            study.pool.close()
        results = study.results(command)
        results.save(out / RESULTS_FILE)

        report = write_study_report(out, results)
        say(f"report: {report}")
        return results


class _Study(StudyScoring):
    """One study directory: its substrates, data, runs and scores, built on demand and reused."""

    def __init__(self, out: Path, options: StudyOptions, corpus: StudyCorpus) -> None:
        self.out, self.options, self.scale, self.corpus = out, options, options.scale, corpus
        self.experts = tuple(code for code in corpus.codes if code != "en")[:2]
        self.substrates: dict[str, Path] = {}
        self.data_dirs: dict[tuple[str, str], Path] = {}
        scale = options.scale
        per_run = scale.threads or (max(1, available_cpus() // scale.jobs) if scale.jobs > 1 else None)
        self.pool = RunPool(out, scale.jobs, per_run)

    # ------------------------------------------------------------ substrates and data

    def _full(self) -> Path:
        return self.options.substrate or self.out / "substrate-full"

    def _ngram_corpus(self) -> list[str]:
        return [f"{s.language}={s.ngram_file}" for s in self.corpus.languages]

    def _train_files(self) -> list[str]:
        return [s.train_file for s in self.corpus.languages]

    def substrate(self, key: str) -> Path:
        if key in self.substrates:
            return self.substrates[key]
        scale, progress = self.scale, self.options.progress
        built = self.out / ("substrate" if key == "glyph" else f"substrate-{key}")
        if key != "glyph" and is_substrate(built):
            path = built  # finished, whether or not its parent still is
        elif key == "glyph":
            full = self._full()
            if not is_substrate(full) and not is_substrate(built):
                if self.options.substrate is not None:
                    raise PgtError(f"--substrate {full} is not a substrate directory (no {SUBSTRATE_FILE})")
                say(f"== substrate: {SMALL_FAMILY} at dim {scale.dim}, n-grams from the training text -> {full}")
            path = adapter.build_substrate(
                self.out / "substrate", full, self._ngram_corpus(), self._train_files(), scale.dim, progress
            )
            lineage = adapter.substrate_lineage(path)
            say(f"== the glyph arms stand on {path}: {lineage.describe()}")
            check_heads(lineage.dim, scale.heads)
        elif key in ("random", "shuffled"):
            path = adapter.control_substrate(self.substrate("glyph"), self.out / f"substrate-{key}", key, CONTROL_SEED)
        else:
            path = self._variant(key)
        self.substrates[key] = path
        return path

    def _variant(self, key: str) -> Path:
        """The glyph substrate's parent trimmed with its rows re-centred, or its visible-blanks twin trimmed."""
        glyph = self.substrate("glyph")
        full = self._full()
        if full == glyph:
            raise PgtError(
                f"the embeddings family re-trims the full substrate; --substrate {glyph} is already "
                "trimmed: give its full parent or let the study build one"
            )
        if key == "visible":
            twin = self.out / "substrate-visible-full"
            if self.options.visible_substrate is None and not is_substrate(twin):
                say(f"== {full} rendered again with visible blanks -> {twin}")
            full = adapter.visible_twin(full, twin, self.options.progress, self.options.visible_substrate)
        path = adapter.build_substrate(
            self.out / f"substrate-{key}",
            full,
            self._ngram_corpus(),
            self._train_files(),
            self.scale.dim,
            self.options.progress,
            recentre=key == "recentred",
        )
        if adapter.substrate_lineage(path).vocab_size != adapter.substrate_lineage(glyph).vocab_size:
            raise PgtError(f"substrate variant {key} has another vocabulary than {glyph}")
        return path

    def data(self, substrate_key: str, data_key: str) -> Path:
        key = (substrate_key, data_key)
        if key not in self.data_dirs:
            if data_key == "all":
                files = self._train_files()
            else:
                other = self.experts[0 if data_key == "expert-a" else 1]
                files = [self.corpus.language("en").train_file, self.corpus.language(other).train_file]
            self.data_dirs[key] = adapter.prepare_data(
                files,
                self.substrate(substrate_key),
                self.out / "data" / f"{substrate_key}-{data_key}",
                self.options.progress,
            )
        return self.data_dirs[key]

    # ------------------------------------------------------------ training

    def _family_run(self, family: Family) -> FamilyRun:
        path = self.out / "families" / f"{family}.json"
        return FamilyRun.load(path) if path.is_file() else FamilyRun(family, False, 0.0)

    def _save_family_run(self, state: FamilyRun) -> None:
        state.save(self.out / "families" / f"{state.family}.json")

    def train(self, family: Family) -> None:
        """Sweep every arm's learning rate, train every seed (and for merging: merge and tune)."""
        started, state = time.monotonic(), self._family_run(family)
        say(f"== family {family}")
        lrs = {record.arm: record.chosen_lr for record in self.sweeps(family_arms(family))}
        runs = self.out / "runs"
        for seed in range(self.options.seeds):
            self.pool.run(
                [
                    RunJob(
                        f"{arm.name}, seed {seed}, lr {lrs[arm.name]:g}",
                        self._settings(arm, seed, runs / arm.name / f"seed-{seed}", lrs[arm.name]),
                    )
                    for arm in family_arms(family)
                ]
            )
            if family == "merging":
                self._merge(seed)
        state.seconds += time.monotonic() - started
        state.finished = True
        self._save_family_run(state)

    def _settings(self, arm: Arm, seed: int, run_dir: Path, lr: float, share: float = 1.0) -> dict:
        return growth_settings(
            arm,
            seed,
            self.scale,
            self.substrate(arm.substrate),
            self.data(arm.substrate, arm.data),
            run_dir,
            self.options.progress and self.pool.workers == 1,  # a worker's bars would only fill its log
            lr,
            share=share,
        )

    def sweeps(self, arms: list[Arm]) -> list[SweepRecord]:
        """Each arm's learning-rate sweep (OUT/sweeps/ARM.json): its candidate with the lowest final loss on the
        training data's validation split. The sweeps not yet run are trained now, all `arms`' as one batch."""
        scale, sweeps = self.scale, self.out / "sweeps"
        to_sweep = [arm for arm in arms if not (sweeps / f"{arm.name}.json").is_file()]
        self.pool.run(
            [
                RunJob(
                    f"sweep {arm.name}: lr {lr:g}",
                    self._settings(arm, SWEEP_SEED, sweeps / arm.name / f"lr-{lr:g}", lr, scale.sweep_share),
                )
                for arm in to_sweep
                for lr in scale.sweep_lrs
            ]
        )
        for arm in to_sweep:
            finals = [
                adapter.stage_record(adapter.stage_dirs(sweeps / arm.name / f"lr-{lr:g}")[-1]) for lr in scale.sweep_lrs
            ]
            losses = [final.val_loss for final in finals]
            chosen = scale.sweep_lrs[min(range(len(losses)), key=losses.__getitem__)]
            SweepRecord(arm.name, list(scale.sweep_lrs), losses, chosen, finals[-1].tokens_total, SWEEP_SEED).save(
                sweeps / f"{arm.name}.json"
            )
            say(
                f"   {arm.name}: lr {chosen:g} (validation loss "
                + ", ".join(f"{lr:g}: {loss:.4f}" for lr, loss in zip(scale.sweep_lrs, losses, strict=True))
                + ")"
            )
        return [SweepRecord.load(sweeps / f"{arm.name}.json") for arm in arms]

    def _merge(self, seed: int) -> None:
        runs = self.out / "runs"
        experts = [adapter.stage_dirs(runs / name / f"seed-{seed}")[-1] for name in ("expert-a", "expert-b")]
        adapter.merge(experts, runs / MERGE / f"seed-{seed}", "mean", seed)
        adapter.merge(experts, runs / "merge-adapter" / f"seed-{seed}", "adapter", seed)
        say(f"== tuning the adapter merge, seed {seed}")
        adapter.tune(
            runs / "merge-adapter" / f"seed-{seed}",
            self.data("glyph", "all"),
            runs / TUNED / f"seed-{seed}",
            tokens=self.scale.tune_tokens,
            batch_size=self.scale.batch_size,
            seq_len=self.scale.seq_len,
            seed=seed,
            device=self.scale.device,
            progress=self.options.progress,
        )
