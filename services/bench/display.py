"""The live progress display: phases as progress bars, the running figures as a table."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table


class Dashboard:
    """`with Dashboard(console, "load") as d:` then `d.phase(...)`, `d.advance(...)`, `d.stats[...] = ...`."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.stats: dict[str, str] = {}
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._live = Live(get_renderable=self._render, console=console, refresh_per_second=4, transient=False)

    def _render(self) -> Group:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan")
        table.add_column()
        for key, value in self.stats.items():
            table.add_row(key, value)
        return Group(Panel(table, title=f"questlog bench {self.title}", expand=False), self.progress)

    def phase(self, description: str, total: float) -> TaskID:
        return self.progress.add_task(description, total=total)

    def advance(self, task: TaskID, by: float = 1) -> None:
        self.progress.advance(task, by)

    def update(self, task: TaskID, completed: float) -> None:
        self.progress.update(task, completed=completed)

    def finish(self, task: TaskID) -> None:
        total = self.progress.tasks[task].total if task < len(self.progress.tasks) else None
        self.progress.update(task, completed=total)

    def __enter__(self) -> Dashboard:
        self._live.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._live.stop()
