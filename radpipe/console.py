"""Everything radpipe prints: progress bars and summary tables on stderr, via rich."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator:
    """Yield ``advance(n=1, note="", rate=None)``; shows steps done, elapsed time, ETA and the caller's rate.

    The caller states the rate (``rate="4.51 cases/s"``) so the bar shows the same number as the summary
    that follows it; rich's own estimate is a moving average over every step, cached ones included.
    """
    columns = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
    ]
    with Progress(*columns, console=console, transient=False, disable=total == 0) as progress:
        task = progress.add_task(description, total=total, note="", rate="")

        def advance(n: int = 1, note: str = "", rate: str | None = None) -> None:
            progress.advance(task, n)
            progress.update(task, note=note, **({"rate": rate} if rate is not None else {}))

        yield advance


def summary_table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def error(message: str) -> None:
    # escaped: a message quoting "models: [logreg, rf]" must not lose it as rich markup
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)
