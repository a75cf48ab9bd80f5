"""The trainer's small components on their own: the cadence of a stage, the typed metrics records, and
files of older pgt versions that held state now derived."""

from __future__ import annotations

import json

from pgt.growth.checkpoint import TrainState
from pgt.growth.metrics import (
    RECORD_TYPES,
    EvalPoint,
    SourceDraw,
    StageEndEvent,
    StopEvent,
    TrainPoint,
    read_metrics,
)
from pgt.growth.records import StageRecord
from pgt.growth.schedule import Cadence


def test_the_cadence_leaves_the_last_step_to_the_end_of_the_stage():
    cadence = Cadence(total_steps=12, log_every=5, eval_every=4, checkpoint_every=3)
    assert [s for s in range(1, 13) if cadence.should_log(s)] == [5, 10, 12]
    assert [s for s in range(1, 13) if cadence.should_evaluate(s)] == [4, 8]
    assert [s for s in range(1, 13) if cadence.should_checkpoint(s, stopped=False)] == [3, 6, 9]
    assert not cadence.should_checkpoint(6, stopped=True)
    never = Cadence(total_steps=12, log_every=5, eval_every=0, checkpoint_every=0)
    assert not any(never.should_evaluate(s) or never.should_checkpoint(s, stopped=False) for s in range(1, 13))


def test_every_record_type_round_trips_through_metrics_jsonl(tmp_path):
    records = [
        TrainPoint(stage=1, global_step=4, tokens=512, loss=5.5, step=4, lr=1e-3, grad_norm=0.5, tokens_per_s=9.0),
        EvalPoint(stage=1, global_step=4, tokens=512, val_loss=5.0, step=4, val_bpb=2.0, bz2_bpb=3.0, xz_bpb=3.5),
        StageEndEvent(
            stage=1,
            global_step=4,
            tokens=512,
            val_loss=5.0,
            val_bpb=2.0,
            stopped_early=False,
            sources={"wiki": SourceDraw(512, 512, 0.25)},
        ),
        StopEvent(
            stage=2, global_step=5, tokens=640, reason="non-finite loss or gradient", loss=float("nan"), grad_norm=1.0
        ),
    ]
    lines = [json.dumps(r.to_json(), sort_keys=True, allow_nan=False) for r in records]
    (tmp_path / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines))
    back = read_metrics(tmp_path)
    assert [type(r) for r in back] == [type(r) for r in records] and back[:3] == records[:3]
    assert back[3].loss is None and json.loads(lines[3])["loss"] is None  # non-finite: null, never NaN
    assert {(t.KIND, t.EVENT) for t in RECORD_TYPES.values()} == set(RECORD_TYPES)
    assert json.loads(lines[2])["event"] == "stage_end" and json.loads(lines[0])["kind"] == "train"


def test_files_of_older_versions_with_derived_state_still_load():
    state = TrainState.from_json({"stage": 2, "step": 3, "stage_tokens": 384, "param_groups": [{"lr": 0.1}]})
    assert (state.stage, state.step) == (2, 3) and "param_groups" not in state.to_json()
    stage = {
        "stage": 3,
        "blocks": 3,
        "kind": "growth",
        "tokens_seen": 1,
        "tokens_total": 1,
        "steps": 1,
        "stopped_early": False,
        "val_loss": 1.0,
        "val_bpb": 1.0,
        "best_val_loss": None,
        "params_total": 1,
        "params_trainable": 1,
        "init": "random",
        "frozen_blocks": 2,
        "lora": None,
        "embedding_trained": False,
        "wall_time_s": 1.0,
    }
    record = StageRecord.from_json(stage)
    assert record.blocks == 3 and "blocks" not in record.to_json()
