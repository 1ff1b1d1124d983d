"""`ecom db shell`: psql (or sqlcmd) connected as the role that owns that database's step."""

from __future__ import annotations

import os
import shutil
import subprocess

from core.errors import EcomError
from core.settings import Role, Settings


def role_for(database: str) -> Role:
    return "publisher" if database == "ecom_dwh" else "generator"


def run(settings: Settings, database: str, command: str | None) -> int:
    role = role_for(database)
    creds = settings.credentials(role)
    dbname = settings.warehouse_db if database == "ecom_dwh" else settings.source_db
    if settings.dialect == "postgresql":
        psql = shutil.which("psql")
        if not psql:
            raise EcomError(
                "psql not found: install the PostgreSQL client (Debian: `apt-get install postgresql-client`)"
            )
        env = {**os.environ, "PGPASSWORD": creds.password, "PGSSLMODE": settings.pg_sslmode}
        cmd = [
            psql,
            "-h",
            settings.db_host,
            "-p",
            str(settings.port),
            "-U",
            creds.user,
            "-d",
            dbname,
            "-v",
            "ON_ERROR_STOP=1",
        ]
        if command:
            cmd += ["-c", command]
        return subprocess.run(cmd, env=env, check=False).returncode
    sqlcmd = shutil.which("sqlcmd")
    if not sqlcmd:
        raise EcomError("sqlcmd not found: install mssql-tools18 (see README, 'Run against SQL Server')")
    env = {**os.environ, "SQLCMDPASSWORD": creds.password}
    cmd = [sqlcmd, "-S", f"{settings.db_host},{settings.port}", "-U", creds.user, "-d", dbname]
    cmd += ["-N"] if settings.mssql_encrypt else []
    cmd += ["-C"] if settings.mssql_trust_server_certificate else []
    if command:
        cmd += ["-Q", command]
    return subprocess.run(cmd, env=env, check=False).returncode
