"""The lm-evaluation-harness tasks of the boxes task, shipped inside the package.

`TASKS_DIR` is the folder to give `lm_eval --include_path` (`etbench tasks-path` prints it); the task
names and their box counts are read from the task YAML files, so adding a variant is one YAML file.
In a checkout, the top-level `tasks/` is a link to this folder.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent


@cache
def task_names() -> dict[int, str]:
    """Boxes per context -> lm-eval task name, from every task YAML that sets `dataset_kwargs.n_boxes`."""
    import yaml

    names: dict[int, str] = {}
    for path in sorted(TASKS_DIR.glob("*/*.yaml")):
        spec = yaml.safe_load(path.read_text())
        n_boxes = (spec.get("dataset_kwargs") or {}).get("n_boxes")
        if "task" in spec and n_boxes is not None:
            names[int(n_boxes)] = spec["task"]
    return names
