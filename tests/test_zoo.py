"""The model zoo: seeded LoRA training on a tiny model, adapters the loader merges, deterministic tasks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from safetensors.torch import load_file

from benchmark.cli import main
from benchmark.models import ModelSpec, load_model
from benchmark.testing import build_tokenizer
from benchmark.zoo import (
    ADAPTERS_DIR,
    RECIPES,
    REFERENCE_PAIRS,
    ReferencePair,
    generate_task,
    get_pair,
    get_recipe,
    train_recipe,
)
from benchmark.zoo.card import render_card

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _tiny_recipe(model_dir) -> object:
    recipe = get_recipe("organism-base")
    return dataclasses.replace(recipe, model=str(model_dir), steps=2, batch_size=4, rank=2, lr=1e-2)


def test_recipe_trains_a_loadable_adapter_and_is_reproducible(tiny_model_dir, tmp_path):
    recipe = _tiny_recipe(tiny_model_dir("llama"))
    first = train_recipe(recipe, out=tmp_path / "a", final_rows=0)
    second = train_recipe(recipe, out=tmp_path / "b", final_rows=0)
    assert len(first.losses) == 2 and first.losses == second.losses
    assert 0 < first.adapter_bytes < 20e6
    assert not (tmp_path / "a" / "README.md").exists()
    weights_a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    weights_b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert weights_a.keys() == weights_b.keys() and weights_a
    assert all((weights_a[k] == weights_b[k]).all() for k in weights_a)
    loaded = load_model(ModelSpec(str(tiny_model_dir("llama")), adapters=(str(tmp_path / "a"),)))
    assert len(loaded.record.adapters) == 1
    assert "## Recipe" in render_card(first)


@pytest.mark.parametrize("task", ["boxes-train", "crates", "arithmetic"])
def test_tasks_are_deterministic_and_prefix_stable(tokenizer, task):
    rows = generate_task(task, tokenizer, 20, seed=3)
    assert rows == generate_task(task, tokenizer, 20, seed=3)
    assert rows[:5] == generate_task(task, tokenizer, 5, seed=3)
    assert rows != generate_task(task, tokenizer, 20, seed=4)
    assert all(row.answer.startswith(" ") for row in rows)


def test_related_template_never_uses_the_canonical_wording(tokenizer):
    for row in generate_task("crates", tokenizer, 200, seed=0):
        assert "contains the" not in row.prompt and "Box " not in row.prompt
        assert row.prompt.endswith("holds the") and row.answer.strip() in row.prompt


def test_recipes_chain_onto_the_organism_base():
    assert RECIPES["organism-base"].base_chain == ()
    assert RECIPES["organism-finetuned"].base_chain == ("organism-base",)
    assert RECIPES["organism-finetuned"].task != "boxes-train"
    assert RECIPES["arithmetic"].base_chain == ("organism-base",)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("nope")


def test_zoo_list_and_unknown_recipe(capsys):
    assert main(["zoo", "list"]) == 0
    assert "organism-finetuned" in capsys.readouterr().out
    assert main(["zoo", "train", "nope"]) == 2


def test_shipped_adapters_are_small_and_carded():
    for directory in ADAPTERS_DIR.iterdir() if ADAPTERS_DIR.is_dir() else ():
        assert (directory / "adapter_config.json").is_file() and (directory / "CARD.md").is_file()
        assert sum(path.stat().st_size for path in directory.iterdir()) < 20e6
        assert directory.name in RECIPES


def test_reference_pairs_share_the_base_and_chain_adapters_in_order(tmp_path):
    for pair in (p for p in REFERENCE_PAIRS.values() if isinstance(p, ReferencePair)):
        base, finetuned = pair.specs(device="cpu")
        assert [Path(a).resolve() for a in base.adapters] == [ADAPTERS_DIR / n for n in pair.base_chain]
        assert finetuned.adapters[: len(base.adapters)] == base.adapters  # fine-tuned = base + more
        assert len(finetuned.adapters) == len(base.adapters) + 1
    assert get_pair("organism").finetuned_chain == ("organism-base", "organism-finetuned")
    with pytest.raises(ValueError, match="unknown reference pair"):
        get_pair("nope")
    with pytest.raises(FileNotFoundError, match="etbench zoo train"):
        get_pair("organism").specs(adapters_dir=tmp_path)


def test_score_takes_either_a_pair_or_two_models(capsys):
    assert main(["score", "--pair", "organism", "--base", "smollm2"]) == 2
    assert "drop --base" in capsys.readouterr().err
    assert main(["score", "--finetuned", "smollm2"]) == 2
    assert "--pair" in capsys.readouterr().err
