"""A grown PGT stage served by vLLM gives transformers' greedy continuation (run by gpu_check.sh).

    pip install vllm   # on the GPU machine
    python benchmarks/vllm_check.py [--work DIR] [--new-tokens 24]

Builds a small real run on the embedded fortune corpus (a 256-dim bvv241-2-3 substrate,
token data, two growth stages: the second grown with copy-top), then for a few prompts
compares the greedy continuation of stage 2 through `vllm.LLM(model=DIR)` with
`model.generate(do_sample=False)` of transformers on the same weights, both in float32.
A GELU model (our default) runs through vLLM's Transformers modeling backend
(`model_impl="transformers"`): vLLM's native Arcee kernels implement only relu2, so a
`--hidden-act relu2` model (an untrained `pgt init` one here) is checked natively too.
Exit status 0 when every continuation matches, 1 otherwise; 0 with a note without CUDA or vLLM.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

PROMPTS = ["Hello, I am a language model ", "The cat sat on the", "Жизнь — это", "A fool and his money"]


def build_models(work: Path) -> tuple[Path, Path]:
    """(stage 2 of a GELU growth run, an untrained relu2 model) on one small substrate."""
    from pgt.corpus.fortunes import default_corpus_files
    from pgt.data.prepare import prepare_token_data
    from pgt.growth import GrowthConfig, grow
    from pgt.model.loading import init_model_dir
    from pgt.substrate.build import build_substrate

    substrate, data, run = work / "substrate", work / "data", work / "run"
    corpus = default_corpus_files()
    if not substrate.exists():
        build_substrate(substrate, family="bvv241-2-3", corpus=corpus, dim=256, progress=False)
    if not data.exists():
        prepare_token_data([str(path) for path in corpus], substrate, data, progress=False)
    grow(
        GrowthConfig(
            substrate=str(substrate),
            data=str(data),
            out=str(run),
            stages=2,
            init="copy-top",
            heads=4,
            seq_len=128,
            batch_size=16,
            context=256,
            tokens_per_stage=16 * 128 * 50,
            eval_every=0,
            checkpoint_every=0,
            progress=False,
        )
    )
    relu2 = work / "relu2"
    if not relu2.exists():
        init_model_dir(substrate, relu2, layers=2, heads=4, hidden_act="relu2", max_position_embeddings=256)
    return run / "stage-2", relu2


def transformers_greedy(model_dir: Path, new_tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, greedy new ids) per prompt from transformers, float32 on the GPU."""
    import torch

    from pgt.model.loading import load_model

    model, tokenizer = load_model(model_dir, dtype=torch.float32, device="cuda")
    prompts, continuations = [], []
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tokenizer(prompt)["input_ids"]
            out = model.generate(
                torch.tensor([ids], device="cuda"),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                temperature=None,
                top_k=None,
                top_p=None,
            )
            prompts.append(ids)
            continuations.append(out[0, len(ids) :].tolist())
    del model
    torch.cuda.empty_cache()
    return prompts, continuations


def vllm_greedy(model_dir: Path, prompts: list[list[int]], new_tokens: int, model_impl: str) -> list[list[int]]:
    """Greedy new ids per prompt from vLLM (temperature 0, EOS ignored so lengths match)."""
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=str(model_dir),
        model_impl=model_impl,
        dtype="float32",
        max_model_len=256,
        enforce_eager=True,
        gpu_memory_utilization=0.3,
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompts], params)
    served = [list(output.outputs[0].token_ids) for output in outputs]
    del llm
    return served


def compare(label: str, expected: list[list[int]], served: list[list[int]]) -> bool:
    same = True
    for prompt, want, got in zip(PROMPTS, expected, served, strict=True):
        first = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
        if first is None and len(want) == len(got):
            print(f"  {label}: {prompt!r}: identical {len(want)} tokens")
        else:
            same = False
            print(f"  {label}: {prompt!r}: DIFFERS from token {first}: transformers {want[:12]} vllm {got[:12]}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="where to build the run (default: a temporary directory)")
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("vllm_check: no CUDA device: nothing checked")
        return 0
    try:
        import vllm
    except ImportError:
        print("vllm_check: vLLM is not installed (pip install vllm): nothing checked")
        return 0
    # The engine in this process: no worker processes re-importing a script read from stdin.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    work = args.work or Path(tempfile.mkdtemp(prefix="pgt-vllm-"))
    gelu_stage, relu2 = build_models(work)
    print(f"vllm_check: vLLM {vllm.__version__}, torch {torch.__version__}, models in {work}")
    ok = True
    for label, model_dir, impl in (
        ("gelu stage-2, transformers backend", gelu_stage, "transformers"),
        ("relu2, native Arcee", relu2, "auto"),
    ):
        prompts, expected = transformers_greedy(model_dir, args.new_tokens)
        ok &= compare(label, expected, vllm_greedy(model_dir, prompts, args.new_tokens, impl))
    print("vllm_check: " + ("every continuation matches transformers" if ok else "MISMATCH (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
