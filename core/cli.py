"""The `ecom` command line: every verb of DESIGN.md, each with `--help`.

This module is the composition root: it reads the settings once and hands them to the
layer that does the work (imported lazily, so `ecom --help` stays fast). Expected
failures (`EcomError`) print one line naming what to fix and exit non-zero.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from core import console
from core.errors import EcomError, NotBuiltYetError, SettingsError
from core.settings import Settings, get_settings

F = TypeVar("F", bound=Callable[..., Any])
LAYERS = ("bronze", "silver", "gold", "publish")


def handled(fn: F) -> F:
    """Turn expected failures into one clear line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EcomError as exc:
            console.error(str(exc))
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            console.error("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return get_settings()


def not_built(verb: str, issue: str) -> None:
    raise NotBuiltYetError(f"`ecom {verb}` is not built yet ({issue}); nothing was done")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """ecom lakehouse: generator → bronze → silver → gold → warehouse, gated by Great Expectations."""


# --- ecom db ---------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Databases: the local PostgreSQL cluster, schemas and roles, DDL, a SQL shell."""


@db.command("up")
@handled
def db_up() -> None:
    """Create (first time) and start the private PostgreSQL cluster under .local/pg."""
    from core import localpg

    console.ok(f"local PostgreSQL: {localpg.up(settings())}")


@db.command("down")
@handled
def db_down() -> None:
    """Stop the private PostgreSQL cluster."""
    from core import localpg

    console.ok(f"local PostgreSQL: {localpg.down(settings())}")


@db.command("status")
@handled
def db_status() -> None:
    """Is the database reachable, initialised, and are the roles in place?"""
    from core import dbstatus

    healthy = dbstatus.report(settings())
    sys.exit(0 if healthy else 1)


@db.command("init")
@click.option(
    "--print-security",
    is_flag=True,
    help="Print the roles/grants script (placeholders for passwords) and exit.",
)
@handled
def db_init(print_security: bool) -> None:
    """Create ecom_db, ecom_dwh, schemas, tables and least-privilege roles (idempotent)."""
    from core import dbinit

    s = settings()
    if print_security:
        click.echo(dbinit.print_security(s))
        return
    dbinit.init(s, echo=console.ok)


@db.command("ddl")
@click.option("--dialect", type=click.Choice(["mssql", "postgresql"]), default=None, help="Default: ECOM_DIALECT.")
@click.option("--database", type=click.Choice(["ecom_db", "ecom_dwh"]), default="ecom_db", show_default=True)
@handled
def db_ddl(dialect: str | None, database: str) -> None:
    """Print the DDL compiled from the one schema definition."""
    from core import dbinit

    d = dialect or settings().dialect
    sep = "\nGO\n" if d == "mssql" else ";\n"
    click.echo("".join(stmt + sep for stmt in dbinit.ddl(d, database)), nl=False)  # every batch ends in GO / ;


@db.command("shell", context_settings={"ignore_unknown_options": True})
@click.argument("database", type=click.Choice(["ecom_db", "ecom_dwh"]), default="ecom_db")
@click.option("-c", "command", default=None, help="Run one SQL command and exit.")
@handled
def db_shell(database: str, command: str | None) -> None:
    """psql (sqlcmd on mssql) connected as the role that owns that database's step."""
    from core import dbshell

    sys.exit(dbshell.run(settings(), database, command))


# --- ecom generate ----------------------------------------------------------------------------
@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,  # -h/--help go to the real command, which lists its options
)
@click.pass_context
@handled
def generate(ctx: click.Context) -> None:
    """Write a batch (or, with --stream, batches) of simulated shop activity into ecom_db."""
    try:
        from generator.cli import generate as real
    except ImportError:
        not_built("generate", "issue 3: generator")
    try:
        sub = real.make_context("generate", list(ctx.args), parent=ctx.parent)
    except click.UsageError as exc:  # bad flag or value: one line, like every other failure
        raise SettingsError(f"{exc.format_message()} — see `ecom generate --help`") from None
    with sub:
        real.invoke(sub)


# --- ecom run / validate -----------------------------------------------------------------------
@cli.command()
@click.argument("layer", type=click.Choice([*LAYERS, "all"]))
@click.option("--full-refresh", is_flag=True, help="Rebuild from scratch instead of incrementally.")
@click.option("--tables", default=None, help="Comma-separated subset of tables.")
@click.option(
    "--summary-json", default=None, type=click.Path(dir_okay=False), help="Also write the run summary as JSON here."
)
@handled
def run(layer: str, full_refresh: bool, tables: str | None, summary_json: str | None) -> None:
    """Run one layer in isolation, or all in order, each gated by its checkpoint."""
    from core import runner

    names = [t.strip() for t in tables.split(",") if t.strip()] if tables else None
    ok = runner.run(settings(), layer, full_refresh=full_refresh, tables=names, summary_json=summary_json)
    sys.exit(0 if ok else 1)


@cli.command()
@click.argument("layer", type=click.Choice(["bronze", "silver", "gold"]))
@handled
def validate(layer: str) -> None:
    """Run that layer's checkpoint on the current tables and update Data Docs."""
    from core.spark import get_spark
    from expectations.checkpoints import print_results, validate_layer

    s = settings()
    spark = get_spark(s, f"ecom-validate-{layer}", register=False)
    results = validate_layer(spark, s, layer)
    print_results(results)
    sys.exit(0 if results and all(r.passed for r in results) else 1)


@cli.command()
@click.option("--open", "open_", is_flag=True, help="Open index.html in a browser.")
@click.option("--serve", type=int, default=None, metavar="PORT", help="Serve the site on 127.0.0.1:PORT.")
@handled
def docs(open_: bool, serve: int | None) -> None:
    """Path of (or serve) the Great Expectations Data Docs site."""
    from expectations import docs as data_docs

    index = data_docs.docs_index(settings())
    click.echo(str(index))
    if serve is not None:
        data_docs.serve(index, serve, open_browser=open_)
    elif open_ and not data_docs.open_in_browser(index):
        console.warn(f"no browser found: open {index.as_uri()}")


# --- ecom sql / status / maintain / demo ---------------------------------------------------------
@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("-e", "query", default=None, help="Run a query and exit.")
@click.option("-f", "file", default=None, type=click.Path(exists=True, dir_okay=False), help="Run a SQL file.")
@click.pass_context
@handled
def sql(ctx: click.Context, query: str | None, file: str | None) -> None:
    """The real `spark-sql` shell with the lake's catalog and Delta configured."""
    from core import sqlshell

    sys.exit(sqlshell.run(settings(), query=query, file=file, extra=list(ctx.args)))


@cli.command()
@click.option("--limit", default=40, show_default=True, help="How many rows.")
@handled
def status(limit: int) -> None:
    """Last runs per layer and table: rows in/out/quarantined, freshness, result."""
    from core import ledger

    ledger.print_status(settings(), limit=limit)


@cli.command()
@click.option(
    "--retain-hours",
    type=click.FloatRange(min=168),
    default=168,
    show_default=True,
    help="VACUUM keeps this much history (at least 7 days; a table's own longer setting wins).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    help="Seconds to wait for a table's writer lock before skipping it.",
)
@handled
def maintain(retain_hours: float, wait_s: float) -> None:
    """OPTIMIZE and VACUUM every lake table per the retention policy."""
    from core import maintain as maintain_mod

    maintain_mod.maintain(settings(), retain_hours=retain_hours, wait_s=wait_s)


@cli.command()
@handled
def demo() -> None:
    """Set up what is missing, then generate → all layers → Data Docs; prints where to look."""
    from core import demo as demo_mod

    demo_mod.run(settings())


def main() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    try:
        cli(prog_name="ecom")
    except EcomError as exc:  # raised while reading settings, before a command ran
        console.error(str(exc))
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
