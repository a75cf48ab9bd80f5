"""The model card (`README.md`) of a model directory, written from the records, never by hand.

`model_card` takes plain typed facts, so any writer (`pgt init`, the growth trainer's stage
save, `pgt merge`) can fill it from what it recorded; `facts_of` gives the facts a model
and its substrate description already know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgt.model.architecture import SAMPLING

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from pgt.substrate.store import SubstrateMeta

PAPERS = (
    (
        "Emergent Semantics Beyond Token Embeddings: Transformer LMs with Frozen Visual Unicode Representations",
        "2507.04886",
    ),
    ("Growing Transformers: Modular Composition and Layer-wise Expansion on a Frozen Substrate", "2507.07129"),
)


@dataclass(frozen=True)
class EvalFigure:
    """One evaluation result as the card shows it."""

    task: str
    metric: str
    value: float
    protocol: str  # how it was measured, in a few words (prompt/scoring, examples, runs)


@dataclass(frozen=True)
class DataSourceFact:
    """One source of a weighted training mixture as the card shows it."""

    name: str
    path: str
    weight: float  # share of the training rows
    tokens: int  # training tokens drawn from it, up to this model
    epochs: float  # passes over its training split


def _count(count: int) -> str:
    return f"{count / 1e9:.2f} B" if count >= 1e9 else f"{count / 1e6:.1f} M"


def loading_snippet(*, trust_remote_code: bool = False) -> str:
    """The card's Python snippet (a merged-experts directory needs `trust_remote_code=True`)."""
    remote = ", trust_remote_code=True" if trust_remote_code else ""
    settings = ", ".join(f"{key.replace('_', '-')} {value}" for key, value in SAMPLING.items() if key != "do_sample")
    return (
        "```python\n"
        "import torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'tokenizer = AutoTokenizer.from_pretrained("REPO_OR_DIR")\n'
        f'model = AutoModelForCausalLM.from_pretrained("REPO_OR_DIR"{remote}, dtype=torch.bfloat16)\n'
        'inputs = tokenizer("Hello, I am a language model ", return_tensors="pt")\n'
        f"outputs = model.generate(**inputs, max_new_tokens=100)  # samples: {settings} (generation_config.json)\n"
        "print(tokenizer.decode(outputs[0], skip_special_tokens=True))\n"
        "```\n"
    )


def model_card(
    *,
    name: str,
    blocks: int,
    d_model: int,
    heads: int,
    context: int,
    vocab_size: int,
    hidden_act: str,
    params_total: int,
    params_trainable: int,
    substrate_family: str,
    substrate_fingerprint: str,
    stage: int | None = None,
    training_data: str | None = None,
    training_tokens: int | None = None,
    growth: str | None = None,
    evaluations: Sequence[EvalFigure] = (),
    embedding_trained: bool = False,
    experts: int = 0,
    architecture: str = "ArceeForCausalLM",
    data_sources: Sequence[DataSourceFact] = (),
    lineage: str | None = None,
) -> str:
    """The README.md of a model directory, in the shape of the published `abs-bvv` cards."""
    merged = experts > 0
    kind = f"a merge of {experts} PGT experts" if merged else "a Progressive Growth Transformer (PGT)"
    embedding = (
        "trained from a random start (the trainable-embedding baseline)"
        if embedding_trained
        else "the frozen glyph substrate: vectors computed from pictures of the tokens' Unicode glyphs, never trained"
    )
    tags = ["pgt", "frozen-embeddings", "progressive-growth"] + ([] if merged else ["arcee"])
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags:",
        *(f"- {tag}" for tag in tags),
        "---",
        "",
        f"# {name}",
        "",
        f"{name} is {kind}: a decoder-only language model whose token embedding is {embedding}. "
        "Its depth is grown one Transformer block at a time on top of that embedding.",
        "",
        "## Model",
        "",
        "| | |",
        "| --- | --- |",
        f"| architecture | `{architecture}`"
        + (" (custom code: `trust_remote_code=True`)" if merged else " (standard transformers, no custom code)")
        + " |",
        *([f"| stage | {stage} |"] if stage is not None else []),
        f"| blocks | {blocks} |",
        f"| d_model | {d_model} |",
        f"| heads | {heads} |",
        f"| context | {context} tokens |",
        f"| vocabulary | {vocab_size:,} |",
        f"| activation | {hidden_act} |",
        f"| parameters | {_count(params_total)} total, {_count(params_trainable)} trainable"
        + (" (the embedding is frozen)" if params_total > params_trainable else "")
        + " |",
        f"| substrate | {substrate_family}, fingerprint `{substrate_fingerprint}` |",
        "",
        "## Training",
        "",
        f"- Data: {training_data or 'none (untrained: random blocks on the substrate)'}",
        f"- Tokens: {training_tokens:,}" if training_tokens is not None else "- Tokens: 0",
        f"- How it was grown: {growth or 'not grown yet (written by `pgt init`)'}",
        *([f"- Started from: {lineage}"] if lineage else []),
        "",
    ]
    if data_sources:
        lines += ["| source | weight | tokens drawn | epochs | token data |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {d.name} | {d.weight:.1%} | {d.tokens:,} | {d.epochs:.3f} | `{d.path}` |" for d in data_sources]
        lines.append("")
    lines += [
        "## Evaluation",
        "",
    ]
    if evaluations:
        lines += ["| task | metric | value | protocol |", "| --- | --- | --- | --- |"]
        lines += [f"| {e.task} | {e.metric} | {e.value:.2f} | {e.protocol} |" for e in evaluations]
    else:
        lines.append("Not evaluated yet (`pgt eval DIR --task ...` records figures with their protocol).")
    lines += [
        "",
        "## Limitations",
        "",
        "A small research model: it continues text and has no instruction tuning or safety training; "
        "its facts are unreliable and its outputs may be biased or offensive. The tokenizer must be this "
        "directory's own (its ids index the frozen substrate).",
        "",
        "## Usage",
        "",
        loading_snippet(trust_remote_code=merged).rstrip("\n"),
        "",
        "## Citation",
        "",
        *(f"- A. Bochkov, 2025. *{title}*. arXiv:{number}, https://arxiv.org/abs/{number}" for title, number in PAPERS),
        "",
    ]
    return "\n".join(lines)


def facts_of(model: PreTrainedModel, substrate_meta: SubstrateMeta, name: str) -> dict[str, Any]:
    """The `model_card` fields that `model` and its `substrate.json` content already fix."""
    config = model.config
    experts = len(getattr(config, "experts", None) or [])
    first = config.expert_configs()[0] if experts else config
    total = sum(p.numel() for p in model.parameters())
    frozen = model.get_input_embeddings().weight.numel() if getattr(config, "freeze_embeddings", True) else 0
    return {
        "name": name,
        "blocks": config.num_hidden_layers,
        "d_model": config.hidden_size,
        "heads": first.num_attention_heads,
        "context": config.max_position_embeddings,
        "vocab_size": config.vocab_size,
        "hidden_act": first.hidden_act,
        "params_total": total,
        "params_trainable": total - frozen,
        "substrate_family": substrate_meta.family,
        "substrate_fingerprint": substrate_meta.fingerprint,
        "embedding_trained": bool(getattr(config, "embedding_trained", False)),
        "experts": experts,
        "architecture": type(model).__name__,
    }
