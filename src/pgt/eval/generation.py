"""Batched continuations with the KV cache (`model.generate`, left padding), greedy or sampled.

The reference generates exactly `n` new tokens per prompt, one prompt at a time,
and samples (docs/evaluation.md, "What a run is"). Here every prompt gets its own
random stream (seeded per example and run) and its own context budget, so what a
prompt gets never depends on the prompts batched with it. Generation does not stop
at the end-of-sequence token: the reference reads `</s>` as text (it cuts BLEU
hypotheses there; a letter answer after it is wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pgt.errors import PgtError
from pgt.eval.batching import (
    context_length,
    encode,
    length_sorted_batches,
    pad_left,
    pad_token_id,
)
from pgt.model.architecture import SAMPLING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Sampler:
    """How the next token is chosen: greedy (argmax) or sampled from the softmax at `temperature`."""

    kind: Literal["greedy", "sample"]
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def describe(self) -> str:
        if self.kind == "greedy":
            return "greedy (argmax; deterministic)"
        filters = [f"top-k {self.top_k}"] * (self.top_k is not None) + [f"top-p {self.top_p}"] * (
            self.top_p is not None
        )
        return f"sampling at temperature {self.temperature:g}" + (f", {', '.join(filters)}" if filters else "")


# `--decoding` choices. `sample` is the likeliest reading of the reference's code (plain
# temperature-1 sampling from the full softmax); `card` the model card's settings; `greedy` ours.
SAMPLERS = {
    "sample": Sampler("sample"),
    "card": Sampler("sample", temperature=SAMPLING["temperature"], top_k=SAMPLING["top_k"], top_p=SAMPLING["top_p"]),
    "greedy": Sampler("greedy"),
}
DEFAULT_DECODING = "sample"


@dataclass(frozen=True)
class Continuations:
    """Per prompt (in prompt order): the new token ids, the extracted continuation text, and cropping."""

    new_ids: list[list[int]]
    texts: list[str]  # the reference's reading: see `continuation_text`
    truncated: list[bool]  # prompt and new tokens exceeded the context: cropped before some new token
    n_capped: int  # examples whose new-token count was capped at half the context

    @property
    def n_truncated(self) -> int:
        return sum(self.truncated)


def continuation_text(
    tokenizer: PreTrainedTokenizerBase, prompt: str, prompt_ids: list[int], new_ids: list[int]
) -> str:
    """The reference's continuation: decode prompt + new tokens keeping special-token text, remove the
    beginning-of-sequence text (`<s>`), drop the prompt's characters."""
    bos = tokenizer.bos_token or "<s>"
    text = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=False).replace(bos, "")
    return text[len(prompt) :]


class _RowSampler:
    """A logits processor that draws each row's next token from its own generator.

    It returns scores that are -inf everywhere but the drawn token, so `generate`'s greedy
    step picks exactly that draw: the result is independent of batch size and composition.
    """

    def __init__(self, sampler: Sampler, generators: list[torch.Generator]) -> None:
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.generators = generators
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(sampler.temperature)])
        if sampler.top_k is not None:
            self.warpers.append(TopKLogitsWarper(sampler.top_k))
        if sampler.top_p is not None:
            self.warpers.append(TopPLogitsWarper(sampler.top_p))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        probs = torch.softmax(self.warpers(input_ids, scores.float()), dim=-1)
        picks = [torch.multinomial(row, 1, generator=g) for row, g in zip(probs, self.generators, strict=True)]
        chosen = torch.full_like(scores, float("-inf"))
        chosen.scatter_(1, torch.cat(picks)[:, None], 0.0)
        return chosen


def generate_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    new_tokens: Sequence[int],
    *,
    sampler: Sampler = SAMPLERS["greedy"],
    seeds: Sequence[int] | None = None,
    batch_size: int = 8,
) -> Continuations:
    """Generate exactly `new_tokens[i]` tokens after `prompts[i]` (sampled with seed `seeds[i]`).

    A prompt that fits the context with its own new tokens is generated in a batch with the KV
    cache; a batch holds prompts with the same new-token count, so no prompt depends on another.
    One that does not is generated as the reference's nanoGPT-style sampler does, alone: before
    every new token the sequence is cropped to its last `context` tokens (the passage of a
    reading task goes first, never the question and `Answer:`). New-token counts are capped at
    half the context.
    """
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    if sampler.kind == "sample" and (seeds is None or len(seeds) != len(prompts)):
        raise PgtError("sampled generation needs one seed per prompt")
    limit = context_length(model)
    pad_id = pad_token_id(tokenizer)
    wanted = [min(max(n, 1), limit // 2) for n in new_tokens]
    encoded = encode(tokenizer, prompts)
    cropped = [len(ids) + n > limit for ids, n in zip(encoded, wanted, strict=True)]
    new_ids: list[list[int]] = [[] for _ in prompts]
    device = next(model.parameters()).device

    def generators(rows: list[int]) -> list[torch.Generator]:
        return [torch.Generator(device=device).manual_seed(int(seeds[i])) for i in rows]  # type: ignore[index]

    for i in (i for i, cut in enumerate(cropped) if cut):
        new_ids[i] = _cropped_continuation(
            model, encoded[i], wanted[i], limit, sampler, generators([i]) if sampler.kind == "sample" else []
        )
    for steps in sorted(set(wanted)):  # one new-token count per batch: equal budgets, no neighbour effects
        group = [i for i, n in enumerate(wanted) if n == steps and not cropped[i]]
        for chunk in length_sorted_batches([len(encoded[i]) for i in group], batch_size, "generating"):
            batch = [group[j] for j in chunk]
            input_ids, attention_mask = pad_left([encoded[i] for i in batch], pad_id, device)
            processors = LogitsProcessorList()
            if sampler.kind == "sample":
                processors.append(_RowSampler(sampler, generators(batch)))
            # eos_token_id=[]: never stop early (and never take the model's saved sampling settings).
            config = GenerationConfig(max_new_tokens=steps, do_sample=False, pad_token_id=pad_id, eos_token_id=[])
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                logits_processor=processors,
            )
            for row, i in enumerate(batch):
                new_ids[i] = output[row, input_ids.shape[1] :].tolist()
    texts = [
        continuation_text(tokenizer, prompt, ids, new)
        for prompt, ids, new in zip(prompts, encoded, new_ids, strict=True)
    ]
    n_capped = sum(w < n for w, n in zip(wanted, new_tokens, strict=True))
    return Continuations(new_ids, texts, cropped, n_capped)


def _cropped_continuation(
    model: PreTrainedModel,
    ids: list[int],
    steps: int,
    context: int,
    sampler: Sampler,
    generators: list[torch.Generator],
) -> list[int]:
    """nanoGPT's `generate`: before every new token, crop the sequence to its last `context` ids and run
    the model on that window (no cache: a cropped window starts again at position 0)."""
    import torch

    chooser = _RowSampler(sampler, generators) if sampler.kind == "sample" else None
    sequence = list(ids)
    device = next(model.parameters()).device
    with torch.no_grad():
        for _ in range(steps):
            window = torch.tensor([sequence[-context:]], device=device)
            scores = model(input_ids=window, use_cache=False).logits[:, -1, :]
            if chooser is not None:
                scores = chooser(window, scores)
            sequence.append(int(scores.argmax(dim=-1)))
    return sequence[len(ids) :]
