"""What the demo shows of a grown run: per-stage held-out scores and samples, compressors beside them,
and the glyphs behind the frozen embeddings with their nearest neighbours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgt.io import atomic_file
from pgt.model.architecture import SAMPLING

# Samples use the model card's sampling settings (SAMPLING), seeded so every run prints the same samples.
PROMPTS = ("The meaning of life is", "Жизнь — это")
SAMPLE_TOKENS = 40
SHOWCASE_TOKENS = ("A", "Ж", "the", "Α", "А", "ing", "ого", "漢")
NEIGHBOURS = 6


def say(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class StageResult:
    """One stage's held-out score and samples."""

    stage: int
    bpb: float | None  # bits per byte on the held-out documents (None: --eval-docs 0)
    documents: int
    samples: list[tuple[str, str]]  # (prompt, continuation)


def evaluate_and_sample(out: Path, run_dir: Path, seed: int, eval_docs: int | None) -> list[StageResult]:
    """Per stage: perplexity and bits per byte on held-out fortunes (`pgt eval --task perplexity`, into
    stage-K/eval/; `eval_docs` None: every held-out document), and a seeded sample per prompt; the samples
    also go to OUT/samples.md."""
    import torch

    from pgt.eval.report import stage_dirs
    from pgt.eval.results import EvalRecord
    from pgt.eval.runner import evaluate_to_file, planned_path
    from pgt.growth.run_layout import stage_number
    from pgt.model import load_model

    results = []
    for stage_dir in stage_dirs(run_dir):
        stage = stage_number(stage_dir)
        model, tokenizer = load_model(stage_dir)
        model.eval()
        bpb, documents = None, 0
        if eval_docs != 0:
            done = planned_path(stage_dir, "perplexity")
            record = EvalRecord.load(done) if done.is_file() else None
            if record is None or record.protocol["limit"] != eval_docs:  # a finished stage never changes
                _, record = evaluate_to_file(model, tokenizer, stage_dir, "perplexity", limit=eval_docs)
            bpb, documents = record.value("bpb"), record.n_examples
            say(
                f"  stage {stage}: held-out perplexity {record.value('perplexity'):.1f}, {bpb:.3f} bits/byte "
                f"({documents} documents, {record.details['n_bytes']:,} bytes)"
            )
        samples = []
        for index, prompt in enumerate(PROMPTS):
            input_ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            torch.manual_seed(seed + index)  # the same draws for a prompt at every stage
            with torch.inference_mode():
                output = model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    max_new_tokens=SAMPLE_TOKENS,
                    pad_token_id=model.config.pad_token_id,
                    **SAMPLING,
                )
            samples.append((prompt, tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)))
        results.append(StageResult(stage, bpb, documents, samples))
    lines = [
        "# Samples per stage",
        "",
        f"Seeded sampling (seed {seed} + prompt number) with the reference's settings ("
        + ", ".join(f"{k}={v}" for k, v in SAMPLING.items() if k != "do_sample")
        + f"), {SAMPLE_TOKENS} new tokens.",
        "",
    ]
    for result in results:
        for prompt, text in result.samples:
            lines += [f"## stage {result.stage}: {prompt}", "", "```text", prompt + text, "```", ""]
    with atomic_file(out / "samples.md", "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return results


def compressor_section(results: list[StageResult], eval_docs: int | None) -> list[str]:
    """Markdown lines: every stage's held-out bits per byte beside the compressors' on the same bytes."""
    from itertools import islice

    from pgt.eval.runner import held_out_texts
    from pgt.growth.validation import COMPRESSOR_NAMES, compressed_bits_per_byte

    scored = [result for result in results if result.bpb is not None]
    if not scored:
        return []
    texts = list(islice(held_out_texts(None), eval_docs))
    figures = compressed_bits_per_byte("".join(texts).encode())
    compressors = {COMPRESSOR_NAMES[key]: value for key, value in figures.items()}
    last = scored[-1]
    verdict = "below" if all(last.bpb < value for value in compressors.values()) else "not below every compressor"
    lines = [
        "## Held-out bits per byte against compressors",
        "",
        f"The {last.documents} held-out documents of the default corpus ({sum(len(t.encode()) for t in texts):,} "
        "UTF-8 bytes), scored by `pgt eval --task perplexity`; the compressors see the same bytes, "
        "concatenated.",
        "",
        "| | bits per byte |",
        "|---|---:|",
    ]
    lines += [f"| stage {result.stage} | {result.bpb:.3f} |" for result in scored]
    lines += [f"| `{name}` | {value:.3f} |" for name, value in compressors.items()]
    lines += [
        "",
        f"The last stage ({last.bpb:.3f}) is {verdict} "
        + ", ".join(f"`{name}` ({value:.3f})" for name, value in compressors.items())
        + ".",
        "",
    ]
    return lines


def _printable(token: str) -> str:
    """The token for a plot title; code points where matplotlib's default font has no glyph (CJK)."""
    return repr(token) if all(ord(char) < 0x2E80 for char in token) else " ".join(f"U+{ord(c):04X}" for c in token)


def write_glyphs(out: Path, substrate: Path) -> list[str]:
    """Render the showcase tokens (OUT/glyphs.png) and list their nearest glyph neighbours (OUT/neighbours.txt)."""
    from pgt.eval.plots import save_figure
    from pgt.substrate.glyphs import nearest_tokens, render_bitmap
    from pgt.substrate.store import Substrate

    loaded = Substrate.load(substrate, verify=False)
    tokenizer, matrix = loaded.tokenizer, loaded.embeddings.numpy()
    cell = loaded.meta.cell
    vocab = tokenizer.get_vocab()
    present = [token for token in SHOWCASE_TOKENS if token in vocab]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(present), figsize=(1.4 * len(present), 3.2), squeeze=False)
    for column, token in enumerate(present):
        for row, augment in enumerate((None, loaded.meta.augment)):
            ax = axes[row][column]
            ax.imshow(
                render_bitmap(token, cell, augment=augment, layout_engine=loaded.meta.layout_engine),
                cmap="gray_r",
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][column].set_title(f"{_printable(token)}\nid {vocab[token]}", fontsize=8)
    axes[0][0].set_ylabel("plain", fontsize=8)
    axes[1][0].set_ylabel("augmented", fontsize=8)
    figure.suptitle(f"Glyphs behind the frozen embeddings ({cell}x{cell} GNU Unifont)", fontsize=9)
    save_figure(figure, out / "glyphs.png")

    lines = []
    for token in present:
        neighbours = nearest_tokens(matrix, vocab[token], NEIGHBOURS)
        names = tokenizer.convert_ids_to_tokens([index for index, _ in neighbours])
        similarities = [similarity for _, similarity in neighbours]
        listed = ", ".join(f"{name!r} {value:.2f}" for name, value in zip(names, similarities, strict=True))
        lines.append(f"{token!r} (id {vocab[token]}): {listed}")
    missing = [token for token in SHOWCASE_TOKENS if token not in vocab]
    if missing:
        lines.append(f"(not single tokens in this vocabulary: {', '.join(map(repr, missing))})")
    with atomic_file(out / "neighbours.txt", "w", encoding="utf-8") as handle:
        handle.write("Nearest tokens by cosine similarity of the frozen glyph embeddings\n" + "\n".join(lines) + "\n")
    return lines
