"""The private PostgreSQL cluster under `.local/pg` (`ecom db up | down | status`).

A real server on 127.0.0.1 with password (SCRAM) auth and its own port, created with
`initdb` and run with `pg_ctl`; no system service. `initdb`/`postgres` refuse to run as
root, so as root the cluster runs as the unprivileged `postgres` user; elsewhere as the
user who runs the command. Credentials are generated once into `.local/credentials.env`
(mode 0600) unless the environment already sets them.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import EcomError
from core.settings import ENV_PREFIX, ROLES, Settings

SERVICE_USER = "postgres"


@dataclass(frozen=True)
class ClusterPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "postgresql.log"


def paths(settings: Settings) -> ClusterPaths:
    return ClusterPaths(settings.local_dir / "pg")


def credentials_file(settings: Settings) -> Path:
    return settings.local_dir / "credentials.env"


def find_bindir(install: bool = True, echo: bool = True) -> Path:
    """The directory holding initdb/pg_ctl; install Debian's `postgresql` as root if missing."""
    for candidate in _bindirs():
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        if echo:
            print("PostgreSQL server binaries not found: installing Debian's `postgresql` package …")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env, stdout=subprocess.DEVNULL)
        proc = subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise EcomError("apt-get install postgresql failed:\n" + proc.stderr[-2000:])
        return find_bindir(install=False)
    raise EcomError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found. Install them: Debian/Ubuntu "
        "`sudo apt-get install postgresql`, macOS `brew install postgresql@15`; or point "
        f"{ENV_PREFIX}DB_HOST/{ENV_PREFIX}DB_PORT at an existing server."
    )


def _bindirs() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            found.append(Path(out.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    found += [Path(p) for p in versions]
    for tool in ("initdb", "pg_ctl"):
        which = shutil.which(tool)
        if which:
            found.append(Path(which).resolve().parent)
    return found


def _as_service_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise EcomError(
            f"running as root, and the unprivileged user {SERVICE_USER!r} that the cluster runs as does "
            "not exist: install Debian's `postgresql` package or run as a normal user"
        ) from None
    return ["runuser", "-u", SERVICE_USER, "--", *cmd]


def _chown_for_service(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVICE_USER)
        for p in [path, *path.rglob("*")]:
            os.chown(p, entry.pw_uid, entry.pw_gid)


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(_as_service_user(cmd), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise EcomError(
            f"{Path(cmd[0]).name} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-1500:]}"
        )
    return proc


def ensure_credentials(settings: Settings) -> dict[str, str]:
    """Generate the local cluster's passwords once; never overwrite what exists."""
    path = credentials_file(settings)
    existing: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                existing[k.strip()] = v.strip()
    changed = False
    for role in ROLES:
        var = f"{ENV_PREFIX}{role.upper()}_PASSWORD"
        if var in os.environ:
            existing.setdefault(var, os.environ[var])
        if not existing.get(var):
            existing[var] = secrets.token_urlsafe(18)
            changed = True
    if changed or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "# Generated by `ecom db up` for the private local cluster. Never commit.\n"
        body += "".join(f"{k}={v}\n" for k, v in sorted(existing.items()))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
    return existing


def is_running(settings: Settings) -> bool:
    p = paths(settings)
    if not (p.data / "PG_VERSION").exists():
        return False
    bindir = find_bindir(install=False)
    return _run([str(bindir / "pg_ctl"), "-D", str(p.data), "status"], check=False).returncode == 0


def _check_traversable(path: Path) -> None:
    if os.geteuid() != 0:
        return
    proc = subprocess.run(_as_service_user(["test", "-x", str(path)]), check=False)
    if proc.returncode != 0:
        raise EcomError(
            f"the {SERVICE_USER!r} user cannot reach {path}: make its parent folders traversable "
            f"(chmod o+x) or set {ENV_PREFIX}HOME to a folder it can reach"
        )


def up(settings: Settings) -> str:
    """Create (first time) and start the cluster; idempotent. Returns what it did."""
    if settings.dialect != "postgresql":
        raise EcomError(f"`ecom db up` manages the local PostgreSQL cluster, but {ENV_PREFIX}DIALECT=mssql")
    bindir = find_bindir()
    p = paths(settings)
    creds = ensure_credentials(settings)
    did = []
    if not (p.data / "PG_VERSION").exists():
        p.root.mkdir(parents=True, exist_ok=True)
        _chown_for_service(p.root)
        _check_traversable(p.root)
        pwfile = p.root / ".pwfile"
        pwfile.write_text(creds[f"{ENV_PREFIX}ADMIN_PASSWORD"] + "\n")
        os.chmod(pwfile, 0o600)
        _chown_for_service(pwfile)
        try:
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(p.data),
                    "-U",
                    settings.admin_user,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = p.data / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# ecom lakehouse: private local cluster\n"
                f"listen_addresses = '127.0.0.1'\nport = {settings.local_pg_port}\n"
                f"unix_socket_directories = '{p.socket_dir}'\n"
                "timezone = 'UTC'\nlog_timezone = 'UTC'\nshared_buffers = 256MB\n"
                "max_connections = 100\nwal_level = minimal\nmax_wal_senders = 0\n"
                "synchronous_commit = off\nfsync = on\n"
            )
        (p.data / "pg_hba.conf").write_text(
            "# ecom lakehouse: password auth only, loopback only\n"
            "local all all scram-sha-256\n"
            "host  all all 127.0.0.1/32 scram-sha-256\n"
            "host  all all ::1/128 scram-sha-256\n"
        )
        p.socket_dir.mkdir(exist_ok=True)
        _chown_for_service(p.root)
        did.append(f"initialised cluster in {p.data}")
    if is_running(settings):
        did.append(f"already running on 127.0.0.1:{settings.local_pg_port}")
    else:
        p.socket_dir.mkdir(exist_ok=True)
        _chown_for_service(p.socket_dir)
        proc = _run(
            [str(bindir / "pg_ctl"), "-D", str(p.data), "-l", str(p.log), "-w", "-t", "60", "start"],
            check=False,
        )
        if proc.returncode != 0:
            tail = p.log.read_text()[-1500:] if p.log.exists() else proc.stderr
            raise EcomError(f"the local PostgreSQL cluster did not start (port {settings.local_pg_port}): {tail}")
        did.append(f"started on 127.0.0.1:{settings.local_pg_port}")
    return "; ".join(did)


def down(settings: Settings) -> str:
    p = paths(settings)
    if not is_running(settings):
        return "not running"
    bindir = find_bindir(install=False)
    _run([str(bindir / "pg_ctl"), "-D", str(p.data), "-m", "fast", "-w", "stop"])
    return "stopped"
