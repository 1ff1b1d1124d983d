"""`ecom db status`: reachable, initialised, roles least-privileged — one line each."""

from __future__ import annotations

import sqlalchemy as sa

from core import console, db
from core.errors import EcomError
from core.schema import SOURCE_SCHEMA, SOURCE_TABLES
from core.settings import Role, Settings


def checks(settings: Settings) -> list[tuple[str, bool, str]]:
    """(check, ok, detail) rows; never raises for a failed check."""
    out: list[tuple[str, bool, str]] = []
    if settings.dialect == "postgresql" and settings.db_host in ("127.0.0.1", "localhost"):
        from core import localpg

        try:
            running = localpg.is_running(settings)
            out.append(("local cluster", running, f"{localpg.paths(settings).data} on port {settings.port}"))
        except EcomError as exc:
            out.append(("local cluster", False, str(exc)))
    roles: tuple[Role, ...] = ("generator", "extractor", "publisher")
    for role in roles:
        database = settings.database_for(role)
        try:
            with db.connect(settings, role) as conn:
                if role == "publisher":
                    detail = f"connected to {database}"
                else:
                    present = [t for t in SOURCE_TABLES if sa.inspect(conn).has_table(t, schema=SOURCE_SCHEMA)]
                    ok = len(present) == len(SOURCE_TABLES)
                    detail = f"{database}: {len(present)}/{len(SOURCE_TABLES)} source tables"
                    if not ok:
                        out.append((f"{role} login", False, detail + " — run `ecom db init`"))
                        continue
                out.append((f"{role} login", True, detail))
        except EcomError as exc:
            out.append((f"{role} login", False, str(exc)))
    if settings.dialect == "postgresql":
        try:
            with db.connect(settings, "admin", "postgres") as conn:
                supers = conn.scalars(
                    sa.text("SELECT rolname FROM pg_roles WHERE rolsuper AND rolname = ANY(:r)"),
                    {"r": [settings.generator_user, settings.extractor_user, settings.publisher_user]},
                ).all()
            out.append(
                (
                    "least privilege",
                    not supers,
                    "no pipeline role is superuser" if not supers else f"superusers: {supers}",
                )
            )
        except EcomError as exc:
            out.append(("least privilege", False, str(exc)))
    return out


def report(settings: Settings) -> bool:
    rows = checks(settings)
    console.table(
        f"{settings.dialect} at {settings.db_host}:{settings.port}",
        ["check", "ok", "detail"],
        [(c, "yes" if ok else "NO", d) for c, ok, d in rows],
    )
    healthy = all(ok for _, ok, _ in rows)
    (console.ok if healthy else console.error)("healthy" if healthy else "not healthy: see the rows marked NO")
    return healthy
