"""`pgt substrate trim`: a lossless substrate cut to a corpus's tokens, and every command on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import small_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from pgt.cli import main
from pgt.compose.merge import merge_experts
from pgt.corpus.sources import resolve_sources
from pgt.data.loader import TokenData
from pgt.errors import PgtError
from pgt.eval.results import EvalRecord
from pgt.growth import GrowthConfig, grow
from pgt.model.loading import init_model_dir, load_model
from pgt.substrate.layout import BYTE_FALLBACK_COUNT, SPECIAL_TOKENS, byte_token
from pgt.substrate.store import Substrate
from pgt.substrate.trim import TRIM_FILE, TrimRecord, load_trim_record, trim_substrate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parent(substrate_dir: Path) -> Substrate:
    return Substrate.load(substrate_dir)


@pytest.fixture(scope="module")
def trimmed(trimmed_substrate_dir: Path) -> Substrate:
    return Substrate.load(trimmed_substrate_dir)  # verifies the recorded fingerprint


@pytest.fixture(scope="module")
def record(trimmed_substrate_dir: Path) -> TrimRecord:
    return TrimRecord.load(trimmed_substrate_dir / TRIM_FILE)


def corpus_documents(corpus_files: list[Path]) -> list[str]:
    return [text for source in resolve_sources(small_corpus(corpus_files)) for text, _ in source.pieces()]


def test_the_vocabulary_shrinks_to_the_corpus_plus_specials_and_bytes(parent, trimmed, record):
    assert record.parent_fingerprint == parent.fingerprint == trimmed.meta.parent_fingerprint
    assert record.parent_vocab_size == parent.vocab_size == 65_792
    assert trimmed.vocab_size == len(trimmed.tokenizer) == record.vocab_size < 2_000
    assert record.parent_ids == sorted(set(record.parent_ids))
    vocab = trimmed.tokenizer.get_vocab()
    assert set(SPECIAL_TOKENS) <= set(vocab) and not any(token.startswith("<special_token_") for token in vocab)
    assert {byte_token(value) for value in range(BYTE_FALLBACK_COUNT)} <= set(vocab)
    assert record.corpus_ids + record.merge_ids + record.special_ids + record.byte_ids == record.vocab_size
    assert trimmed.fingerprint != parent.fingerprint


def test_kept_rows_and_token_strings_are_the_parents_bit_for_bit(parent, trimmed, record):
    kept = parent.embeddings[record.parent_ids]
    assert trimmed.embeddings.dtype == kept.dtype == torch.float32
    assert trimmed.embeddings.numpy().tobytes() == kept.numpy().tobytes()
    assert trimmed.tokenizer.convert_ids_to_tokens(
        list(range(trimmed.vocab_size))
    ) == parent.tokenizer.convert_ids_to_tokens(record.parent_ids)


def test_the_corpus_encodes_to_the_parents_token_strings(parent, trimmed, record, corpus_files):
    documents = corpus_documents(corpus_files)
    ours = trimmed.tokenizer.backend_tokenizer.encode_batch_fast(documents, add_special_tokens=False)
    theirs = parent.tokenizer.backend_tokenizer.encode_batch_fast(documents, add_special_tokens=False)
    assert len(documents) > 400
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.tokens == reference.tokens
        assert [record.parent_ids[i] for i in mine.ids] == reference.ids


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=120))
def test_any_unicode_round_trips(trimmed, text):
    ids = trimmed.tokenizer.encode(text, add_special_tokens=False)
    assert max(ids, default=0) < trimmed.vocab_size
    assert trimmed.tokenizer.decode(ids, clean_up_tokenization_spaces=False) == text


def test_text_outside_the_corpus_falls_back_to_bytes(trimmed):
    text = "Quixotic 漢字 😀 <special_token_57400>"
    tokens = trimmed.tokenizer.tokenize(text)
    assert {"<0xE6>", "<0xF0>"} <= set(tokens) and "<special_token_57400>" not in tokens
    assert trimmed.tokenizer.decode(trimmed.tokenizer.encode(text, add_special_tokens=False)) == text


def test_corpus_and_its_token_data_keep_the_same_ids(substrate_dir, record, corpus_files, tmp_path):
    from_text = trim_substrate(substrate_dir, tmp_path / "from-text", corpus=small_corpus(corpus_files))
    assert from_text.parent_ids == record.parent_ids
    assert load_trim_record(tmp_path / "from-text") == from_text
    assert load_trim_record(substrate_dir) is None


def test_command_line_and_its_refusals(substrate_dir, trimmed_substrate_dir, token_data_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["substrate", "trim", str(substrate_dir), "--data", str(token_data_dir), "--out", str(out)]) == 0
    assert "ids (" in capsys.readouterr().out
    assert json.loads((out / TRIM_FILE).read_text()) == json.loads((trimmed_substrate_dir / TRIM_FILE).read_text())
    refusals = [
        (substrate_dir, out, "already exists"),
        (substrate_dir, substrate_dir / "inside", "overlaps the input"),
        (trimmed_substrate_dir, tmp_path / "twice", "already trimmed"),
    ]
    for source, target, message in refusals:
        assert main(["substrate", "trim", str(source), "--data", str(token_data_dir), "--out", str(target)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error:") and message in error and error.count("\n") == 1, error
    assert not (substrate_dir / "inside").exists() and not (tmp_path / "twice").exists()
    with pytest.raises(SystemExit):  # argparse: exactly one of --data and --corpus
        main(["substrate", "trim", str(substrate_dir), "--out", str(tmp_path / "none")])


def test_token_data_of_another_tokenizer_is_refused(substrate_dir, trimmed_token_data_dir, tmp_path):
    with pytest.raises(PgtError, match="prepare it again with this substrate"):
        trim_substrate(substrate_dir, tmp_path / "out", data=TokenData(trimmed_token_data_dir))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- every command on a trimmed substrate


@pytest.fixture(scope="module")
def grown(trimmed_substrate_dir, trimmed_token_data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trimmed-growth") / "run"
    config = GrowthConfig(
        substrate=str(trimmed_substrate_dir),
        data=str(trimmed_token_data_dir),
        out=str(out),
        stages=2,
        tokens_per_stage=4 * 32 * 6,
        batch_size=4,
        seq_len=32,
        heads=4,
        context=64,
        eval_every=3,
        eval_tokens=2048,
        checkpoint_every=3,
        log_every=2,
        lr=3e-3,
        progress=False,
    )
    return grow(config)


def test_grow_eval_generate_and_lm_eval_run_on_it(grown, trimmed, hf_offline, monkeypatch, capsys):
    stage = grown / "stage-2"
    model, tokenizer = load_model(stage)
    assert model.config.vocab_size == trimmed.vocab_size and model.lm_head.weight.shape[0] == trimmed.vocab_size
    assert model.config.substrate_fingerprint == trimmed.fingerprint
    assert json.loads((stage / "substrate.json").read_text())["parent_fingerprint"] == trimmed.meta.parent_fingerprint

    assert main(["eval", str(stage), "--task", "perplexity", "--limit", "3"]) == 0
    result = EvalRecord.load(stage / "eval" / "perplexity--default.json")
    assert result.n_examples == 3 and result.value("bpb") > 0
    capsys.readouterr()
    assert main(["generate", str(stage), "Жизнь — это 😀", "--max-new-tokens", "6", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("Жизнь — это 😀")

    monkeypatch.chdir(REPO)
    from pgt.eval.harness import run_harness

    [(_, harness)] = run_harness(
        model,
        tokenizer,
        stage,
        ["fortune_cloze"],
        include_path=Path("tests/data/eval/harness"),
        batch_size=4,
        out_dir=stage / "harness",
    )
    assert harness.n_examples == 10 and 0 <= harness.details["harness_metrics"]["acc"] <= 1


def test_experts_on_one_trimmed_substrate_merge_by_logit_averaging(grown, trimmed_substrate_dir, tmp_path):
    other = init_model_dir(trimmed_substrate_dir, tmp_path / "other", layers=1, heads=4, seed=3)
    merged = merge_experts([grown / "stage-2", other], tmp_path / "merged")
    ids = torch.tensor([[5, 17, 300, 2]])
    logits = []
    for path in (grown / "stage-2", other, merged):
        model, _ = load_model(path)
        with torch.no_grad():
            logits.append(model(ids).logits)
    torch.testing.assert_close(logits[2], (logits[0] + logits[1]) / 2, atol=1e-6, rtol=0)


def test_experts_on_different_trimmed_substrates_are_a_clear_error(grown, substrate_dir, corpus_files, tmp_path):
    trim_substrate(substrate_dir, tmp_path / "en", corpus=small_corpus(corpus_files)[1:])  # same parent, less text
    stranger = init_model_dir(tmp_path / "en", tmp_path / "stranger", layers=1, heads=4)
    with pytest.raises(PgtError, match=r"different \(trimmed\) substrates") as error:
        merge_experts([grown / "stage-2", stranger], tmp_path / "refused")
    assert "union of their corpora" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "refused").exists()


def test_merge_closure_keeps_every_half_a_kept_token_is_built_from():
    from pgt.substrate.trim import merge_closure

    merges = [("t", "h"), ("th", "e"), ("h", "e"), ("t", "he"), ("a", "n"), ("an", "d")]
    assert merge_closure({"the", "x"}, merges) == {"the", "th", "he", "t", "h", "e", "x"}


def test_a_tokenizer_without_byte_fallback_is_refused(byte_level_tokenizer_dir, tmp_path):
    from pgt.substrate.build import build_substrate

    gpt2_like = build_substrate(
        tmp_path / "bytes", family="bvv241-nemo", from_tokenizer=byte_level_tokenizer_dir, dim=16, progress=False
    )
    text = tmp_path / "text.txt"
    text.write_text("hello world\n", encoding="utf-8")
    with pytest.raises(PgtError, match="BPE tokenizer with byte fallback .* BPE without byte fallback"):
        trim_substrate(gpt2_like, tmp_path / "out", corpus=[str(text)])
    assert not (tmp_path / "out").exists()
