"""Behaviour of one model: accuracy through lm-evaluation-harness (the number reported) and the suite's
own scorer on the same split (its per-position breakdown, and a check that both agree)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version

from benchmark.accuracy import AccuracyResult, score_accuracy
from benchmark.data import Split, encode_examples
from benchmark.kinds import defined, outcome_text
from benchmark.models import ModelUnderStudy
from benchmark.models.loading import resolve_source
from benchmark.records import Accuracy
from benchmark.tasks import TASKS_DIR, task_names

logger = logging.getLogger(__name__)
# lm-eval warnings that do not apply to how the suite calls it, by logger: the suite passes an already
# loaded model on purpose (adapters merged, on its device), and the boxes task's dataset reads the suite's
# own metadata (words, seed, size), not the `max_seq_lengths` of lm-eval's long-context tasks.
KNOWN_LM_EVAL_NOISE = {
    "lm_eval.models.huggingface": "`pretrained` model kwarg is not of type `str`",
    "lm_eval.api.task": "Custom kwargs can be passed to `--metadata`",
}


class _DropKnownNoise(logging.Filter):
    """Drops one logger's known, inapplicable warning; everything else it logs passes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for the known warning only."""
        return self.text not in record.getMessage()


_NOISE_FILTERS = {name: _DropKnownNoise(text) for name, text in KNOWN_LM_EVAL_NOISE.items()}


def silence_known_lm_eval_noise() -> None:
    """Install the filters (idempotent: logging keeps one copy of each filter object)."""
    for name, noise in _NOISE_FILTERS.items():
        logging.getLogger(name).addFilter(noise)


@dataclass(frozen=True)
class BehaviourRun:
    """Accuracy of one model on the test split: lm-eval's `acc` and the suite's breakdown of it."""

    lm_eval_accuracy: float
    suite: AccuracyResult
    task: str
    lm_eval_version: str

    @property
    def agree(self) -> bool:
        return abs(self.lm_eval_accuracy - self.suite.accuracy) < 1e-9

    def record(self) -> Accuracy:
        """lm-eval's accuracy (the number reported) with the suite's per-position breakdown."""
        per_position = tuple(defined(a) for a in self.suite.per_position)
        outcomes = outcome_text(self.suite.correct)
        return Accuracy(
            self.lm_eval_accuracy, self.suite.n, per_position, self.suite.n_per_position, outcomes
        )


def lm_eval_accuracy(study: ModelUnderStudy, split: Split, batch_size: int) -> tuple[float, str]:
    """lm-eval's `acc` of the model on the task that regenerates `split` (same words, seed, size)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    silence_known_lm_eval_noise()
    task = task_names()[split.n_boxes]
    source = resolve_source(study.spec)
    metadata = {"pretrained": source.location, "n_prompts": len(split.examples), "seed": split.seed}
    if source.gguf_file:
        metadata["gguf_file"] = source.gguf_file
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    lm = HFLM(pretrained=study.model, tokenizer=study.tokenizer, batch_size=batch_size)
    output = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, log_samples=False)
    return float(output["results"][task]["acc,none"]), task


def measure_behaviour(study: ModelUnderStudy, split: Split, batch_size: int) -> BehaviourRun:
    """Score the model through lm-eval and through the suite; warn loudly if they ever disagree."""
    accuracy, task = lm_eval_accuracy(study, split, batch_size)
    suite = score_accuracy(study.model, encode_examples(study.tokenizer, split.examples), batch_size)
    behaviour = BehaviourRun(accuracy, suite, task, version("lm_eval"))
    if not behaviour.agree:
        logger.warning("lm-eval accuracy %.6f differs from the suite's %.6f", accuracy, suite.accuracy)
    return behaviour
