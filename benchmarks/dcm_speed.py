"""Speed of DCM on a cached prefix against the full-pass path, for one group, in one run.

Same model (SmolLM2-135M's width: 576 wide, 9 heads, 3 key-value heads, MLP 1536, random weights, the local
tokenizer; `--layers` deep, 30 for SmolLM2's depth), same pairs at `cpu-small`'s DCM sizes, both paths of
`train_mask`; checks that they agree (max mask difference < 1e-5, the same heads and accuracies) and
prints the speed ratio. The group's heads sit in the upper half of the network, where a group's heads are
found in practice; the full pass's backward reaches down to the lowest of them, so `--low-layer` moves the
ratio. Run: `python benchmarks/dcm_speed.py [--group value_fetcher] [--layers 8] [--threads 2]`
(`--force-prefix`: structure readers over one prefix from the split's earliest site instead of one per site).
One mask alone: `benchmarks/score_speed.py --stages dcm` times a whole run, whose desiderata train together.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from benchmark.circuit import Circuit, Group
from benchmark.data import Desideratum
from benchmark.dcm import DCMConfig, dcm_data, masking, train_mask
from benchmark.models import ArchitectureAdapter
from benchmark.testing import build_tokenizer

TOLERANCE = 1e-5
CPU_SMALL = DCMConfig(n_train=64, n_validation=32, n_test=32, batch_size=8)  # the cpu-small preset's sizes


def smollm2_shaped(vocab_size: int, n_layers: int, seed: int = 0):
    """A random-weight Llama with SmolLM2-135M's width and `n_layers` layers (the local tokenizer's vocab)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=n_layers,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config).eval()


def group_circuit(group: Group, n_layers: int, low_layer: int | None) -> Circuit:
    """Three heads of `group`, from `low_layer` (default: the middle layer) to the last layer."""
    low = n_layers // 2 if low_layer is None else low_layer
    layers = (low, (low + n_layers - 1) // 2, n_layers - 1)
    return Circuit.of({group.value: [(layer, 3 * i) for i, layer in enumerate(layers)]})


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", default=Group.VALUE_FETCHER.value, choices=[g.value for g in Group])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--low-layer", type=int, default=None, help="lowest layer of the group's heads")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--force-prefix",
        action="store_true",
        help="structure readers over one prefix from the earliest site, not one per site (RunsBySite)",
    )
    args = parser.parse_args()
    if args.force_prefix:
        masking.PREFIX_GROUPS = frozenset(Group)
    torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer(add_bos=True)
    model = smollm2_shaped(len(tokenizer), args.layers)
    adapter = ArchitectureAdapter(model)
    group = Group(args.group)
    circuit = group_circuit(group, args.layers, args.low_layer)
    data = dcm_data(tokenizer, Desideratum.OBJECT, CPU_SMALL)
    print(
        f"model: SmolLM2-135M width, {args.layers} layers; group {group.value} heads {circuit.heads(group)}; "
        f"{CPU_SMALL.n_train}/{CPU_SMALL.n_validation}/{CPU_SMALL.n_test} pairs of "
        f"{data.train.clean.input_ids.shape[1]} tokens, batch {CPU_SMALL.batch_size}"
    )
    run = (model, adapter, circuit, group, Desideratum.OBJECT, data, CPU_SMALL)
    full, t_full = _timed(train_mask, *run, _full_pass=True)
    prefix, t_prefix = _timed(train_mask, *run)
    diff = max(abs(a - b) for a, b in zip(full.mask, prefix.mask, strict=True))
    same = (full.heads, full.validation_accuracy, full.test_accuracy) == (
        prefix.heads,
        prefix.validation_accuracy,
        prefix.test_accuracy,
    )
    status = "ok" if diff < TOLERANCE and same else "MISMATCH"
    print(
        f"{group.value:22s} full pass {t_full:7.2f}s  cached prefix {t_prefix:6.2f}s  "
        f"ratio {t_full / t_prefix:5.2f}x  max|mask diff| {diff:.2e} {status}  "
        f"(searched: {full.searched}; load average {os.getloadavg()[0]:.2f})"
    )
    if status != "ok":
        raise SystemExit(f"the paths differ: mask by {diff}, heads/accuracies equal: {same}")


if __name__ == "__main__":
    main()
