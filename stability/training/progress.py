"""The epoch progress bar of a training run (rich, loaded only when shown)."""

from __future__ import annotations

from collections.abc import Callable


class epoch_progress:
    """A rich progress bar over epochs (or nothing), advanced with each epoch's metrics."""

    def __init__(self, enabled: bool, total: int, completed: int):
        self.enabled, self.total, self.completed = enabled, total, completed

    def __enter__(self) -> Callable[[dict[str, float]], None]:
        if not self.enabled:
            return lambda row: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"), transient=False,
        )  # fmt: skip
        self.bar.__enter__()
        task = self.bar.add_task("train", total=self.total, completed=self.completed, status="")

        def advance(row: dict[str, float]) -> None:
            status = f"train {row['train_acc']:.3f}  test {row['test_acc']:.3f}"
            if "heldout_acc" in row:
                status += f"  held-out {row['heldout_acc']:.3f}"
            self.bar.update(task, advance=1, status=status)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
