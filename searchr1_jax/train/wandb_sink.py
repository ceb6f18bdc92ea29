"""Weights & Biases as an optional sink of ``MetricsLogger`` (beside metrics.jsonl and TensorBoard).

Off unless ``output.wandb_project`` is set. ``wandb`` is imported only then (``pip install
"searchr1-jax[wandb]"``). The run's files live under ``<output.dir>/wandb/`` (in
``WANDB_MODE=offline`` the history stays there until ``wandb sync``); the whole config is logged
as the run's config. The run id is kept in ``<output.dir>/wandb_run_id``, so a training that
is killed and resumed keeps logging into the same wandb run (``resume="allow"``) instead of
starting a new one; steps logged again after a resume (at or below the last step wandb has)
are dropped by wandb itself with a warning.
"""
from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Any, Mapping

RUN_ID_FILE = "wandb_run_id"
MODES = ("", "online", "offline", "disabled")


@dataclasses.dataclass(frozen=True)
class WandbSettings:
    """Where and how to log. Empty strings mean "wandb's default" (entity, mode)."""
    project: str
    entity: str = ""
    run_name: str = ""             # "": the basename of the output directory
    tags: tuple[str, ...] = ()
    mode: str = ""                 # "": wandb decides (WANDB_MODE, login state)

    @classmethod
    def from_config(cls, cfg: Any) -> "WandbSettings | None":
        """From the ``output`` section; None when ``output.wandb_project`` is empty or absent
        (configs saved before these fields existed)."""
        out = cfg.output
        project = out.get("wandb_project", "")
        if not project:
            return None
        tags = tuple(t.strip() for t in out.get("wandb_tags", "").split(",") if t.strip())
        return cls(project=project, entity=out.get("wandb_entity", ""),
                   run_name=out.get("wandb_run_name", ""), tags=tags,
                   mode=out.get("wandb_mode", ""))


def _import_wandb():
    try:
        import wandb
    except ImportError as e:
        raise ImportError("output.wandb_project is set but wandb is not installed: "
                          "pip install 'searchr1-jax[wandb]' (or clear output.wandb_project)"
                          ) from e
    return wandb


def _run_id(logdir: str) -> str:
    """The run id saved in ``logdir`` by an earlier (interrupted) run, or a new one."""
    path = os.path.join(logdir, RUN_ID_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            run_id = f.read().strip()
        if run_id:
            return run_id
    run_id = uuid.uuid4().hex[:12]  # wandb ids: letters and digits
    with open(path, "w", encoding="utf-8") as f:
        f.write(run_id + "\n")
    return run_id


class WandbSink:
    """One wandb run: ``log(step, values)``, ``close()``. Only process 0 builds one."""

    def __init__(self, settings: WandbSettings, logdir: str,
                 config: Mapping[str, Any] | None = None):
        wandb = _import_wandb()
        os.makedirs(logdir, exist_ok=True)
        self.run_id = _run_id(logdir)
        self._run = wandb.init(
            project=settings.project, entity=settings.entity or None,
            name=settings.run_name or os.path.basename(os.path.abspath(logdir)),
            tags=list(settings.tags), config=dict(config or {}), dir=logdir, id=self.run_id,
            resume="allow", mode=settings.mode or None, reinit="create_new")

    @property
    def run_dir(self) -> str:
        """The run's local directory (``<logdir>/wandb/<offline-run-...|run-...>``)."""
        return self._run.dir.removesuffix("/files")

    def log(self, step: int, values: Mapping[str, float]) -> None:
        # NaN/inf are logged as they are (wandb stores them); JSON lines spell them as strings.
        self._run.log(dict(values), step=int(step))

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None
