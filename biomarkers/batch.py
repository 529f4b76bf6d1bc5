"""Many per-subject commands in one process: a chunk of subjects pays the library imports once.

A workflow job for a chunk of subjects runs ``biomarkers batch --tasks JSON``: each task is the
argument list of one per-subject verb (``segment``, ``features``, ``embed``, ``stability``,
``suv``, ``resample``, ``mask``), run in turn by the same command-line code a single-subject job runs, so every output file
is the one that job would write, byte for byte. Caches the verbs keep (pyradiomics extractors by
parameter file) then serve every subject of the chunk.

The first failing task stops the chunk with its own one-line message (it names the subject and
file, and is the chunk's only message); the outputs of the tasks before it are complete files,
the failing one wrote nothing.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from tqdm import tqdm

from biomarkers.errors import BiomarkerError

#: The verbs a batch may run: the per-subject stages of the workflow.
BATCH_VERBS = ("suv", "resample", "mask", "segment", "features", "embed", "stability")


class BatchError(BiomarkerError):
    """A malformed task list."""


def parse_tasks(text: str) -> list[list[str]]:
    """The task list of ``biomarkers batch --tasks``: a JSON array of argument lists, each starting
    with one of :data:`BATCH_VERBS`."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchError(f"--tasks is not JSON: {exc}") from None
    if not isinstance(tasks, list) or not tasks:
        raise BatchError("--tasks must be a non-empty JSON array of argument lists")
    for i, task in enumerate(tasks):
        if not (isinstance(task, list) and task and all(isinstance(a, str) for a in task)):
            raise BatchError(f"task {i + 1} is not a list of strings")
        if task[0] not in BATCH_VERBS:
            raise BatchError(f"task {i + 1}: {task[0]!r} cannot be batched; verbs: {', '.join(BATCH_VERBS)}")
    return tasks


def run_tasks(tasks: Sequence[Sequence[str]], run: Callable[[list[str]], int], progress: bool = True) -> int:
    """Run every task with ``run`` (argument list -> exit status), in order, stopping at the first
    that fails; return its status (0: all ran). The failing task printed its own one-line error."""
    for task in tqdm(tasks, desc=f"batch {tasks[0][0]}", unit="task", disable=None if progress else True):
        status = run(list(task))
        if status:
            return int(status)
    return 0
