"""Rich progress display for training: a ``train.Callback`` that draws on stderr."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .backend import Backend
from .train import Callback, TrainConfig


class RichProgress(Callback):
    """Iteration and the metrics the backend declares (``Backend.progress_metrics``) every step
    (refreshed a few times a second), and the validity of a small sample batch at every
    evaluation."""

    def __init__(self, console: Console | None = None, label: str | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.label = label  # None: the backend's name
        self.progress: Progress | None = None
        self.task = None
        self.validity = "-"
        self.shown: tuple[str, ...] = ()

    def on_backend(self, backend: Backend) -> None:
        self.shown = backend.progress_metrics
        if self.label is None:
            self.label = backend.name

    def on_start(self, run_dir: Path, total: int, start: int, config: TrainConfig) -> None:
        self.progress = Progress(
            TextColumn(f"[bold]{escape(self.label or 'train')}[/]"),  # the label may be a user's path
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(self.label or "train", total=total, completed=start, stats="")
        # Printed here, once the run is loaded, so that a run that fails to start prints
        # nothing but its one error line.
        if start:
            self.console.print(f"resuming {run_dir} at iteration {start}/{total}", markup=False, highlight=False)
        else:
            self.console.print(f"run directory: {run_dir}", markup=False, highlight=False)

    def on_step(self, iteration: int, metrics: dict[str, float]) -> None:
        shown = self.shown or tuple(metrics)
        parts = [f"{k}={metrics[k]:.3f}" for k in shown if k in metrics]
        parts.append(f"valid={self.validity}")
        assert self.progress is not None
        self.progress.update(self.task, completed=iteration, stats=" ".join(parts))

    def on_eval(self, iteration: int, metrics: dict[str, float]) -> None:
        self.validity = f"{100 * metrics['validity']:.0f}%"

    def on_end(self, iteration: int, stopped: bool) -> None:
        if self.progress is not None:
            self.progress.stop()
