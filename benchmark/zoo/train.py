"""Train a recipe's LoRA adapter on CPU: seeded, deterministic data order, loss on the answer tokens only."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.accuracy import score_accuracy
from benchmark.data import EncodedPrompts, check_vocabulary, encode_examples, generate_split
from benchmark.data.tokenization import continuation_ids
from benchmark.models import ModelSpec, load_model
from benchmark.zoo.recipes import ADAPTERS_DIR, Recipe, base_adapters
from benchmark.zoo.tasks import TASK_BOXES, TrainRow, generate_task

# The suite's default test split (SPEC section 2): the canonical accuracy every card reports.
CANONICAL_TEST_ROWS = 500
IGNORE = -100


@dataclass(frozen=True)
class Evaluation:
    """Canonical 7-box test accuracy after `step` training steps, on the first `n` rows of the split."""

    step: int
    accuracy: float
    n: int


@dataclass(frozen=True)
class TrainingReport:
    """What a training run did: the recipe, its losses, evaluations, timings and the saved adapter."""

    recipe: Recipe
    base: ModelSpec
    losses: tuple[float, ...]
    evaluations: tuple[Evaluation, ...]
    train_seconds: float
    total_seconds: float  # loading, training, saving and the final evaluation
    adapter_dir: Path | None
    adapter_bytes: int

    @property
    def seconds_per_step(self) -> float:
        return self.train_seconds / max(len(self.losses), 1)


def encode_rows(tokenizer, rows: Sequence[TrainRow], max_length: int) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (-100 except on the answer tokens)."""
    sequences, targets = [], []
    for row in rows:
        prompt = tokenizer.encode(row.prompt)
        answer = continuation_ids(tokenizer, row.prompt, row.answer)
        if len(prompt) + len(answer) > max_length:
            raise ValueError(f"row of {len(prompt) + len(answer)} tokens exceeds max_length {max_length}")
        sequences.append(prompt + answer)
        targets.append([IGNORE] * len(prompt) + answer)
    width = max(len(s) for s in sequences)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (sequence, target) in enumerate(zip(sequences, targets, strict=True)):
        input_ids[i, : len(sequence)] = torch.tensor(sequence)
        labels[i, : len(target)] = torch.tensor(target)
        mask[i, : len(sequence)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def answer_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens (each predicted from the position before it)."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=IGNORE,
    )


def canonical_test(tokenizer, n_rows: int | None = None) -> EncodedPrompts:
    """The suite's default 7-box test split (seed 0, words kept by the tokenizer): all rows or the first n."""
    vocabulary = check_vocabulary(tokenizer, TASK_BOXES)
    split = generate_split(TASK_BOXES, "test", CANONICAL_TEST_ROWS, 0, vocabulary.objects, vocabulary.labels)
    return encode_examples(tokenizer, split.examples[:n_rows])


def recipe_base(recipe: Recipe, adapters_dir: Path = ADAPTERS_DIR) -> ModelSpec:
    """The model a recipe trains on: its model with its base chain's adapters merged in order."""
    return ModelSpec(recipe.model, adapters=base_adapters(recipe, adapters_dir))


def _lora(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """Wrap the model with a fresh, seeded LoRA (no dropout, so training is deterministic)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(recipe.seed)
    config = LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        target_modules=list(recipe.target_modules),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _evaluate(model, test: EncodedPrompts | None, step: int) -> list[Evaluation]:
    if test is None:
        return []
    model.eval()
    result = score_accuracy(model.get_base_model(), test, batch_size=35)
    model.train()
    print(f"step {step}: canonical accuracy {result.accuracy:.3f} ({result.n} rows)", flush=True)
    return [Evaluation(step, result.accuracy, result.n)]


def _save_adapter(model, recipe: Recipe, out: Path) -> int:
    """Save the adapter (PEFT format) with a portable config and no PEFT boilerplate; return its bytes."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)
    config_path = out / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = " -> ".join([recipe.model, *recipe.base_chain])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return sum(path.stat().st_size for path in out.iterdir() if path.is_file())


def train_recipe(
    recipe: Recipe,
    base: ModelSpec | None = None,
    out: Path | None = None,
    eval_every: int = 0,
    eval_rows: int = 140,
    final_rows: int | None = None,
    adapters_dir: Path = ADAPTERS_DIR,
) -> TrainingReport:
    """Train the recipe's adapter on `base` (default: its model and base chain), save it and measure it.

    `eval_every` > 0 scores the first `eval_rows` canonical test rows every that many steps (to find
    a recipe's step count); the merged model is scored at the end on the first `final_rows` rows
    (None: the whole split, 504 rows for SmolLM2; 0: not scored).
    """
    began = time.perf_counter()
    spec = base or recipe_base(recipe, adapters_dir)
    loaded = load_model(spec)
    tokenizer = loaded.tokenizer
    rows = generate_task(recipe.task, tokenizer, recipe.steps * recipe.batch_size, recipe.seed)
    test = canonical_test(tokenizer, eval_rows) if eval_every > 0 else None
    model = _lora(loaded.model, recipe).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr)
    losses: list[float] = []
    evaluations: list[Evaluation] = []
    seconds = 0.0
    for step in range(1, recipe.steps + 1):
        start = time.perf_counter()
        chunk = rows[(step - 1) * recipe.batch_size : step * recipe.batch_size]
        loss = answer_loss(model, encode_rows(tokenizer, chunk, recipe.max_length))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds += time.perf_counter() - start
        losses.append(loss.item())
        print(f"step {step}/{recipe.steps}: loss {losses[-1]:.4f} ({seconds / step:.2f} s/step)", flush=True)
        if eval_every > 0 and (step % eval_every == 0 or step == recipe.steps):
            evaluations += _evaluate(model, test, step)
    size = 0
    if out is not None:
        out = Path(out)
        size = _save_adapter(model, recipe, out)
    if final_rows is None or final_rows > 0:
        merged = model.merge_and_unload().eval()
        result = score_accuracy(merged, canonical_test(tokenizer, final_rows), batch_size=36)
        evaluations.append(Evaluation(recipe.steps, result.accuracy, result.n))
        print(f"final: canonical accuracy {result.accuracy:.3f} ({result.n} rows)", flush=True)
    total = time.perf_counter() - began
    return TrainingReport(recipe, spec, tuple(losses), tuple(evaluations), seconds, total, out, size)
