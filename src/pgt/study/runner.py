"""`pgt study`: the orchestrator. Every step reuses what a previous run of the same study finished.

  OUT/study-plan.json           the settings (a rerun with others is refused)
  OUT/corpus/                   training JSONL/text per language and the held-out documents
  OUT/substrate-full/           the full bvv241-2-3 substrate (unless --substrate names one)
  OUT/substrate/                it trimmed to the training text: every arm stands on it (a trimmed
                                --substrate is used as is); OUT/substrate-random/ the control
  OUT/data/{all,all-random,expert-a,expert-b}/   token data (`pgt data prepare`)
  OUT/runs/ARM/seed-S/          one normal `pgt grow` run per arm and seed
  OUT/runs/merge/seed-S/        the experts' logit mean (`pgt merge`)
  OUT/runs/merge-adapter/seed-S/, OUT/runs/merge-tuned/seed-S/   `pgt merge --mode adapter`, then `pgt tune`
  MODEL/study/ID.json           each model's held-out scores (ID names the held-out text)
  OUT/study.json, OUT/report.md the results and the page
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pgt.errors import PgtError
from pgt.records import Record
from pgt.study import adapter, flops
from pgt.study.arms import ARMS, MERGE, TUNED, Arm
from pgt.study.corpus import StudyCorpus, parse_corpus_specs, split_corpus
from pgt.study.results import ModelRow, StudyResults, evaluate_claims
from pgt.study.scales import Scale
from pgt.study.scoring import ModelScore, cloze_items, score_model

PLAN_FILE = "study-plan.json"
RESULTS_FILE = "study.json"
ADAPTER_HIDDEN = 64  # `pgt merge --mode adapter`'s default width


@dataclass
class StudyPlan(Record):
    """OUT/study-plan.json: what this study directory is made with."""

    WHAT = "study plan"
    scale: dict
    seeds: int
    corpus: list[str]
    substrate: str | None


@dataclass
class StudyOptions:
    out: Path
    scale: Scale
    seeds: int
    corpus: list[str] | None = None
    substrate: Path | None = None
    progress: bool = False


def _say(message: str) -> None:
    print(message, flush=True)


def _check_plan(out: Path, plan: StudyPlan) -> None:
    path = out / PLAN_FILE
    if path.is_file():
        saved = StudyPlan.load(path)
        same = dataclasses.replace(saved, seeds=plan.seeds) == plan  # more (or fewer) seeds reuse the rest
        if not same:
            raise PgtError(f"{out} holds a study made with other settings (scale, corpus or substrate); "
                           "rerun with the same options or choose another --out")
    plan.save(path)


def growth_settings(arm: Arm, seed: int, scale: Scale, substrate: Path, data: Path, out: Path,
                    progress: bool) -> dict:
    """The `pgt grow` configuration of one arm and seed: all arms share everything but what the arm says."""
    steps = max(1, scale.tokens_per_stage // (scale.batch_size * scale.seq_len))
    return dict(substrate=str(substrate), data=str(data), out=str(out), stages=scale.stages, init=arm.init,
                baseline=arm.baseline, tokens_per_stage=scale.tokens_per_stage, batch_size=scale.batch_size,
                seq_len=scale.seq_len, heads=scale.heads, lr=scale.lr, seed=seed, context=max(512, scale.seq_len),
                eval_every=max(1, steps // 3), eval_tokens=2 * scale.batch_size * scale.seq_len,
                checkpoint_every=max(1, steps // 2), log_every=1,
                lora_from=0, device=scale.device, progress=progress)


def run_study(options: StudyOptions, command: str = "") -> StudyResults:
    """Run (or resume) the whole study in `options.out`; return its results (also OUT/study.json and the report)."""
    from transformers.utils import logging as hf_logging

    from pgt.io import run_lock

    hf_logging.disable_progress_bar()  # a bar per loaded model would drown the study's own lines
    scale, out = options.scale, options.out
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        languages = parse_corpus_specs(options.corpus)
        where = ("device", "threads")  # where it runs, not what it measures
        sizes = {k: v for k, v in dataclasses.asdict(scale).items() if k not in where}
        if scale.threads is not None:
            import torch

            torch.set_num_threads(scale.threads)
        _check_plan(out, StudyPlan(sizes, options.seeds,
                                   [f"{k}={v}" for k, vs in languages.items() for v in vs],
                                   str(options.substrate) if options.substrate else None))
        _say(f"== corpus: {', '.join(languages)} ({scale.heldout} held-out documents per language)")
        corpus = split_corpus(languages, out / "corpus", heldout=scale.heldout, max_train=scale.max_train_documents)
        a, b = [code for code in corpus.codes if code != "en"][:2]
        substrate, random_substrate = _substrates(out, options, corpus)
        data = _data(out, corpus, substrate, random_substrate, a, b, options.progress)
        runs = out / "runs"
        for seed in range(options.seeds):
            for arm in ARMS:
                run_dir = runs / arm.name / f"seed-{seed}"
                _say(f"== {arm.name}, seed {seed} -> {run_dir}")
                adapter.grow(growth_settings(arm, seed, scale, random_substrate if arm.random_substrate else substrate,
                                             data[arm.data], run_dir, options.progress))
            experts = [adapter.stage_dirs(runs / name / f"seed-{seed}")[-1] for name in ("expert-a", "expert-b")]
            adapter.merge(experts, runs / MERGE / f"seed-{seed}", "mean")
            adapter.merge(experts, runs / "merge-adapter" / f"seed-{seed}", "adapter")
            _say(f"== tuning the adapter merge, seed {seed}")
            adapter.tune(runs / "merge-adapter" / f"seed-{seed}", data["all"], runs / TUNED / f"seed-{seed}",
                         tokens=scale.tune_tokens, batch_size=scale.batch_size, seq_len=scale.seq_len, seed=seed,
                         device=scale.device, progress=options.progress)
        results = _score_all(out, corpus, options, substrate, (a, b), command)
        results.save(out / RESULTS_FILE)
        from pgt.study.report import write_study_report

        report = write_study_report(out, results)
        _say(f"report: {report}")
        return results


def _substrates(out: Path, options: StudyOptions, corpus: StudyCorpus) -> tuple[Path, Path]:
    """The trimmed substrate every arm stands on (from --substrate or a new full build) and the random control."""
    from pgt.substrate.store import SUBSTRATE_FILE

    full = options.substrate or out / "substrate-full"
    if not (full / SUBSTRATE_FILE).is_file():
        if options.substrate is not None:
            raise PgtError(f"--substrate {full} is not a substrate directory (no {SUBSTRATE_FILE})")
        _say(f"== substrate: bvv241-2-3 at dim {options.scale.dim}, n-grams from the training text -> {full}")
    substrate = adapter.build_substrate(out / "substrate", full,
                                        [f"{s.language}={s.ngram_file}" for s in corpus.languages],
                                        [s.train_file for s in corpus.languages], options.scale.dim, options.progress)
    lineage = adapter.substrate_lineage(substrate)
    _say(f"== the arms stand on {substrate}: {lineage.describe()}")
    if lineage.dim % (2 * options.scale.heads):
        raise PgtError(f"the substrate's dim {lineage.dim} does not split into {options.scale.heads} heads "
                       "of even width")
    random_substrate = out / "substrate-random"
    if not (random_substrate / SUBSTRATE_FILE).is_file():
        adapter.random_unit_substrate(substrate, random_substrate, seed=0)
    return substrate, random_substrate


def _data(out: Path, corpus: StudyCorpus, substrate: Path, random_substrate: Path, a: str, b: str,
          progress: bool) -> dict[str, Path]:
    every = [s.train_file for s in corpus.languages]
    plans = {"all": (every, substrate), "all-random": (every, random_substrate),
             "expert-a": ([corpus.language("en").train_file, corpus.language(a).train_file], substrate),
             "expert-b": ([corpus.language("en").train_file, corpus.language(b).train_file], substrate)}
    _say("== token data: " + ", ".join(plans))
    return {key: adapter.prepare_data(files, sub, out / "data" / key, progress) for key, (files, sub) in plans.items()}


def _score_all(out: Path, corpus: StudyCorpus, options: StudyOptions, substrate: Path, experts: tuple[str, str],
               command: str) -> StudyResults:
    """Score every model of every seed and gather the rows; FLOPs and tokens from the runs' records."""
    from pgt.compose.tune import TUNE_FILE, TuneRecord

    scale = options.scale
    lineage = adapter.substrate_lineage(substrate)
    items = cloze_items(corpus, scale.cloze_items)
    shape = dict(d=lineage.dim, vocab=lineage.vocab_size, seq_len=scale.seq_len)
    runs = out / "runs"
    rows: dict[str, ModelRow] = {}

    def add(key: str, label: str, kind: str, blocks: int | None, model_dir: Path, tokens: int, spent: float) -> None:
        _say(f"   scoring {model_dir}")
        score: ModelScore = score_model(model_dir, corpus, items, scale.device)
        row = rows.setdefault(key, ModelRow(key=key, label=label, kind=kind, blocks=blocks, runs=[],
                                            training_tokens=tokens, training_flops=spent,
                                            scoring_id=score.scoring_id, bits_per_byte={}, cloze_accuracy={},
                                            cloze_items=score.cloze_items))
        row.runs.append(str(model_dir))
        for code in corpus.codes:
            row.bits_per_byte.setdefault(code, []).append(score.bits_per_byte[code])
            if code in score.cloze_accuracy:
                row.cloze_accuracy.setdefault(code, []).append(score.cloze_accuracy[code])

    n = scale.stages
    names = {"expert-a": experts[0], "expert-b": experts[1]}
    tune_records = []
    for seed in range(options.seeds):
        _say(f"== scoring seed {seed} on the held-out text")
        for arm in ARMS:
            run = runs / arm.name / f"seed-{seed}"
            stages = adapter.stage_dirs(run)
            label = arm.label.format(a=experts[0], b=experts[1])
            if arm.baseline != "none":
                tokens = adapter.stage_tokens(stages[-1])
                add(arm.name, label, "baseline", n, stages[-1], tokens,
                    flops.monolithic_flops(**shape, blocks=n, tokens=tokens))
                continue
            depths = range(1, n + 1) if arm.name == "grown-random" else [n]
            for k in depths:
                key = arm.name if k == n else f"{arm.name}@{k}"
                kind = "expert" if arm.name in names else "grown"
                tokens = adapter.stage_tokens(stages[k - 1])
                add(key, label + (f", stage {k}" if k < n else ""), kind, k, stages[k - 1], tokens,
                    flops.grown_flops(**shape, stages=k, tokens_per_stage=tokens // k))
        expert_tokens = sum(adapter.stage_tokens(adapter.stage_dirs(runs / name / f"seed-{seed}")[-1])
                            for name in ("expert-a", "expert-b"))
        expert_flops = 2 * flops.grown_flops(**shape, stages=n, tokens_per_stage=expert_tokens // (2 * n))
        add(MERGE, f"merge of en+{experts[0]} and en+{experts[1]} (logit mean)", "merge", None,
            runs / MERGE / f"seed-{seed}", expert_tokens, expert_flops)
        tuned = TuneRecord.load(runs / TUNED / f"seed-{seed}" / TUNE_FILE)
        tune_records.append(tuned)
        add(TUNED, f"adapter merge after `pgt tune` ({tuned.tokens:,} tokens)", "merge", None,
            runs / TUNED / f"seed-{seed}", expert_tokens + tuned.tokens,
            expert_flops + flops.adapter_tune_flops(**shape, expert_blocks=[n, n], hidden=ADAPTER_HIDDEN,
                                                    tokens=tuned.tokens))
    ordered = list(rows.values())
    compressors = {s.language: adapter.compressors(s.heldout) for s in corpus.languages}
    from pgt.study.cloze import CHANCE

    return StudyResults(
        out=str(out), command=command or " ".join(sys.argv), scale=scale.name, seeds=options.seeds,
        created=datetime.now(UTC).isoformat(timespec="seconds"), languages=corpus.codes, scoring_id=corpus.scoring_id,
        substrate=lineage, heldout_documents=scale.heldout, compressors=compressors, cloze_chance=CHANCE, rows=ordered,
        tune_start=[r.start_val_loss for r in tune_records], tune_end=[r.end_val_loss for r in tune_records],
        claims=evaluate_claims(ordered, [r.start_val_loss for r in tune_records],
                               [r.end_val_loss for r in tune_records]))
