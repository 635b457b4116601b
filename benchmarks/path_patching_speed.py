"""Speed of the batched path-patching sweep against the plain one-sender-per-pass loop, in one run.

Same model (GPT-2-small shape: 12 layers, 12 heads, d_model 768, random weights, local tokenizer), same
prompts, both methods; checks that their effects agree (max abs difference < 1e-4, float32) and prints
the speed ratio per stage. Run: `python benchmarks/path_patching_speed.py [--prompts 16] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from benchmark.data import build_pairs, encode_pairs, generate_split
from benchmark.models import ArchitectureAdapter, ModelUnderStudy
from benchmark.path_patching import STAGES, sweep_stage
from benchmark.path_patching.reference import reference_stage
from benchmark.testing import build_tokenizer

TOLERANCE = 1e-4


def gpt2_small_shaped(vocab_size: int, seed: int = 0):
    """A random-weight model with GPT-2 small's shape (the vocabulary is the local tokenizer's)."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_embd=768, n_layer=12, n_head=12, n_positions=256)
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompts", type=int, default=14, help="clean prompts (rounded up to whole contexts)"
    )
    parser.add_argument("--boxes", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows-per-pass", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer()
    model = gpt2_small_shaped(len(tokenizer))
    adapter = ArchitectureAdapter(model)
    split = generate_split(args.boxes, "test", args.prompts, seed=0)
    pairs = encode_pairs(tokenizer, build_pairs(split, "path_patching", seed=0))
    receivers = ((9, 1), (10, 4), (11, 7))  # a fixed receiver set for the stages that need one
    print(f"model: GPT-2-small shape, {len(pairs)} prompts of {pairs.clean.input_ids.shape[1]} tokens")
    total_fast = total_plain = 0.0
    for stage in STAGES:
        stage_receivers = None if stage.receivers is None else receivers
        study = ModelUnderStudy(model, adapter)
        fast, t_fast = _timed(
            sweep_stage,
            study,
            pairs,
            stage,
            stage_receivers,
            rows_per_pass=args.rows_per_pass,
            progress=False,
        )
        plain, t_plain = _timed(reference_stage, model, adapter, pairs, stage, stage_receivers)
        diff = (fast.mean - plain.mean).abs().max().item()
        status = "ok" if diff < TOLERANCE else "MISMATCH"
        print(
            f"{stage.group.value:22s} plain {t_plain:7.2f}s  batched {t_fast:6.2f}s  "
            f"ratio {t_plain / t_fast:5.1f}x  max|diff| {diff:.2e} {status}"
        )
        total_fast, total_plain = total_fast + t_fast, total_plain + t_plain
        if diff >= TOLERANCE:
            raise SystemExit(f"effects differ by {diff} >= {TOLERANCE} in stage {stage.group.value}")
    ratio = total_plain / total_fast
    print(f"{'all stages':22s} plain {total_plain:7.2f}s  batched {total_fast:6.2f}s  ratio {ratio:5.1f}x")


if __name__ == "__main__":
    main()
