"""`pgt study`'s scoring half: every finished family's models scored on the held-out text, gathered
into rows, judged (`judge_family`), with the substrates' health: the `StudyResults` the page is made of.

`StudyScoring` is the orchestrator's (`runner._Study`) scoring side; it reads what the training side
made (`out`, `scale`, `options`, `corpus`, `experts`, `substrate()`, `data()`, `sweeps()`, the family
states) and trains nothing.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pgt.compose.merge import DEFAULT_ADAPTER_HIDDEN
from pgt.errors import PgtError
from pgt.study import adapter, flops
from pgt.study.arms import FAMILIES, MERGE, SHARED_LANGUAGE, TUNED, Family, family_arms
from pgt.study.cloze import CHANCE
from pgt.study.results import ANCHOR, FamilyResults, ModelRow, StudyResults, judge_family
from pgt.study.scoring import ModelScore, cloze_items, score_model


def say(message: str) -> None:
    print(message, flush=True)


class StudyScoring:
    def results(self, command: str) -> StudyResults:
        scale = self.scale
        families = []
        for family in FAMILIES:
            state = self._family_run(family)
            if state.finished:
                started = time.monotonic()
                families.append(self._score_family(family))
                state.seconds += time.monotonic() - started
                self._save_family_run(state)
                families[-1].seconds = state.seconds
        if not families:
            raise PgtError(f"{self.out} has no finished family yet")
        keys = [
            "glyph",
            *(["recentred", "shuffled", "visible", "random"] if self._family_run("embeddings").finished else []),
        ]
        health = {
            key: adapter.substrate_health(
                self.substrate(key), self.data(key, "all"), self.out / "health" / f"{key}.json"
            )
            for key in keys
        }

        return StudyResults(
            out=str(self.out),
            command=command or " ".join(sys.argv),
            scale=scale.name,
            seeds=self.options.seeds,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            languages=self.corpus.codes,
            scoring_id=self.corpus.scoring_id,
            substrate=adapter.substrate_lineage(self.substrate("glyph")),
            health=health,
            heldout_documents=scale.heldout,
            validation_documents=scale.validation,
            compressors=self._compressors(),
            cloze_chance=CHANCE,
            families=families,
        )

    def _compressors(self) -> dict[str, dict[str, float]]:
        return {s.language: adapter.compressors(s.heldout) for s in self.corpus.languages}

    def _score_family(self, family: Family) -> FamilyResults:
        """Score every model of every seed and gather the rows; FLOPs and tokens from the runs' records."""
        scale, runs = self.scale, self.out / "runs"
        lineage = adapter.substrate_lineage(self.substrate("glyph"))
        items = cloze_items(self.corpus, scale.cloze_items)
        shape = dict(d=lineage.dim, vocab=lineage.vocab_size, seq_len=scale.seq_len)
        frozen_rows = lineage.dim * lineage.vocab_size
        everywhere = self.corpus.codes
        rows: dict[str, ModelRow] = {}
        sweeps = self.sweeps(family_arms(family))
        lrs = {s.arm: s.chosen_lr for s in sweeps}

        def add(
            key: str,
            label: str,
            kind: str,
            blocks: int | None,
            model_dir: Path,
            tokens: int,
            spent: float,
            trained: int,
            lr: float | None,
            languages: list[str],
        ) -> None:
            say(f"   scoring {model_dir}")
            score: ModelScore = score_model(model_dir, self.corpus, items, scale.device)
            row = rows.setdefault(
                key,
                ModelRow(
                    key=key,
                    label=label,
                    family=family,
                    kind=kind,
                    blocks=blocks,
                    runs=[],
                    training_tokens=tokens,
                    training_flops=spent,
                    trained_parameters=trained,
                    lr=lr,
                    trained_languages=languages,
                    scoring_id=score.scoring_id,
                    bits_per_byte={},
                    cloze_accuracy={},
                    cloze_items=score.cloze_items,
                    validation_bits_per_byte={},
                ),
            )
            row.runs.append(str(model_dir))
            for code in self.corpus.codes:
                row.bits_per_byte.setdefault(code, []).append(score.bits_per_byte[code])
                row.validation_bits_per_byte.setdefault(code, []).append(score.validation_bits_per_byte[code])
                if code in score.cloze_accuracy:
                    row.cloze_accuracy.setdefault(code, []).append(score.cloze_accuracy[code])

        def trained_parameters(stage: object) -> int:
            return stage.params_total - (0 if stage.embedding_trained else frozen_rows)

        tune_start, tune_end = [], []
        for seed in range(self.options.seeds):
            say(f"== scoring family {family}, seed {seed}, on the held-out text")
            for arm in family_arms(family):
                stages = adapter.stage_dirs(runs / arm.name / f"seed-{seed}")
                languages = everywhere if arm.data == "all" else ["en", self._expert_language(arm.data)]
                label = arm.label.format(a=self.experts[0], b=self.experts[1])
                if arm.baseline != "none":
                    record = adapter.stage_record(stages[-1])
                    add(
                        arm.name,
                        label,
                        "baseline",
                        record.blocks,
                        stages[-1],
                        record.tokens_total,
                        flops.monolithic_flops(**shape, blocks=record.blocks, tokens=record.tokens_total),
                        trained_parameters(record),
                        lrs[arm.name],
                        languages,
                    )
                    continue
                depths = range(1, len(stages) + 1) if arm.name == "grown-random" else [len(stages)]
                for k in depths:
                    record = adapter.stage_record(stages[k - 1])
                    key = arm.name if k == len(stages) else f"{arm.name}@{k}"
                    kind = "expert" if arm.family == "merging" else "grown"
                    add(
                        key,
                        label + (f", stage {k}" if k < len(stages) else ""),
                        kind,
                        k,
                        stages[k - 1],
                        record.tokens_total,
                        flops.grown_flops(**shape, stages=k, tokens_per_stage=record.tokens_total // k),
                        trained_parameters(record),
                        lrs[arm.name],
                        languages,
                    )
            if family == "merging":
                tune_start_seed, tune_end_seed = self._score_merges(seed, rows, add, shape)
                tune_start.append(tune_start_seed)
                tune_end.append(tune_end_seed)
        ordered = list(rows.values())
        anchors = {code: figures[ANCHOR] for code, figures in self._compressors().items()}
        comparisons, tested = judge_family(family, ordered, self.corpus.codes, anchors, tune_start, tune_end)
        return FamilyResults(family, ordered, sweeps, comparisons, tested, tune_start, tune_end)

    def _expert_language(self, data_key: str) -> str:
        return self.experts[0 if data_key == "expert-a" else 1]

    def _score_merges(self, seed: int, rows: dict[str, ModelRow], add, shape: dict) -> tuple[float, float]:
        runs = self.out / "runs"
        experts = [
            adapter.stage_record(adapter.stage_dirs(runs / name / f"seed-{seed}")[-1])
            for name in ("expert-a", "expert-b")
        ]
        tokens = sum(e.tokens_total for e in experts)
        spent = sum(rows[name].training_flops for name in ("expert-a", "expert-b"))
        trained = sum(rows[name].trained_parameters for name in ("expert-a", "expert-b"))
        a, b = self.experts
        # The merge trains nothing itself: it has learned only what both experts learned.
        add(
            MERGE,
            f"merge of en+{a} and en+{b} (logit mean)",
            "merge",
            None,
            runs / MERGE / f"seed-{seed}",
            tokens,
            spent,
            trained,
            None,
            [SHARED_LANGUAGE],
        )
        tuned = adapter.tune_record(runs / TUNED / f"seed-{seed}")
        add(
            TUNED,
            f"adapter merge after `pgt tune` ({tuned.tokens:,} tokens)",
            "merge",
            None,
            runs / TUNED / f"seed-{seed}",
            tokens + tuned.tokens,
            spent
            + flops.adapter_tune_flops(
                **shape, expert_blocks=[e.blocks for e in experts], hidden=DEFAULT_ADAPTER_HIDDEN, tokens=tuned.tokens
            ),
            trained + tuned.trainable_parameters,
            None,
            self.corpus.codes,
        )
        return tuned.start_val_loss, tuned.end_val_loss
