"""Console output for long commands: progress per table, a one-screen summary, no log flood."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def step(message: str) -> None:
    console.print(f"[bold cyan]›[/] {message}")


def ok(message: str) -> None:
    console.print(f"[green]✔[/] {escape(message)}")


def warn(message: str) -> None:
    err_console.print(f"[yellow]![/] {escape(message)}")


def error(message: str) -> None:
    # Messages are data (they may hold [brackets]); only our prefix is markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    console.print(t)
