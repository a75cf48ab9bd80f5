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
from pgt.eval.batching import context_length, encode, left_truncate, length_sorted_batches, pad_left, pad_token_id
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
        filters = [f"top-k {self.top_k}"] * (self.top_k is not None) + [f"top-p {self.top_p}"] * (self.top_p is not None)
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
    """Per prompt (in prompt order): the new token ids, the extracted continuation text, and truncation."""

    new_ids: list[list[int]]
    texts: list[str]  # the reference's reading: see `continuation_text`
    truncated: list[bool]  # prompt left-truncated to fit the context
    n_capped: int  # examples whose new-token count was capped at half the context

    @property
    def n_truncated(self) -> int:
        return sum(self.truncated)


def continuation_text(tokenizer: PreTrainedTokenizerBase, prompt: str, prompt_ids: list[int], new_ids: list[int],
                      truncated: bool) -> str:
    """The reference's continuation: decode prompt + new tokens keeping special-token text, remove the
    beginning-of-sequence text (`<s>`), drop the prompt's characters.

    A cut prompt (never in the reference, which does not truncate) drops its decoded characters instead.
    """
    bos = tokenizer.bos_token or "<s>"
    text = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=False).replace(bos, "")
    prefix = tokenizer.decode(prompt_ids, skip_special_tokens=False).replace(bos, "") if truncated else prompt
    return text[len(prefix) :]


class _RowSampler:
    """A logits processor that draws each row's next token from its own generator.

    It returns scores that are -inf everywhere but the drawn token, so `generate`'s greedy
    step picks exactly that draw: the result is independent of batch size and composition.
    """

    def __init__(self, sampler: Sampler, generators: list[torch.Generator]) -> None:
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

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

    A prompt that does not fit the context with its own new tokens loses its beginning
    (the passage of a reading task), never the question and `Answer:` at its end. A batch
    holds prompts with the same new-token count, so no prompt's budget depends on another.
    New-token counts are capped at half the context.
    """
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    if sampler.kind == "sample" and (seeds is None or len(seeds) != len(prompts)):
        raise PgtError("sampled generation needs one seed per prompt")
    limit = context_length(model)
    pad_id = pad_token_id(tokenizer)
    wanted = [min(max(n, 1), limit // 2) for n in new_tokens]
    encoded = encode(tokenizer, prompts)
    kept = [left_truncate(ids, limit - n) for ids, n in zip(encoded, wanted, strict=True)]
    new_ids: list[list[int]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    for steps in sorted(set(wanted)):  # one new-token count per batch: equal budgets, no neighbour effects
        group = [i for i, n in enumerate(wanted) if n == steps]
        for chunk in length_sorted_batches([len(kept[i][0]) for i in group], batch_size, "generating"):
            batch = [group[j] for j in chunk]
            input_ids, attention_mask = pad_left([kept[i][0] for i in batch], pad_id, device)
            processors = LogitsProcessorList()
            if sampler.kind == "sample":
                generators = [torch.Generator(device=device).manual_seed(int(seeds[i])) for i in batch]  # type: ignore[index]
                processors.append(_RowSampler(sampler, generators))
            # eos_token_id=[]: never stop early (and never take the model's saved sampling settings).
            config = GenerationConfig(max_new_tokens=steps, do_sample=False, pad_token_id=pad_id, eos_token_id=[])
            output = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                    logits_processor=processors)
            for row, i in enumerate(batch):
                new_ids[i] = output[row, input_ids.shape[1] :].tolist()
    texts = [
        continuation_text(tokenizer, prompt, ids, new, cut)
        for prompt, (ids, cut), new in zip(prompts, kept, new_ids, strict=True)
    ]
    n_capped = sum(w < n for w, n in zip(wanted, new_tokens, strict=True))
    return Continuations(new_ids, texts, [cut for _, cut in kept], n_capped)
