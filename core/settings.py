"""One typed settings object, read from the environment and optional env files.

Precedence (highest first): process environment, `.env` in the project directory,
`.local/credentials.env` (written by `ecom db up` for the private cluster). Every
variable is `ECOM_<FIELD>`; a wrong or missing value raises `SettingsError` naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import SettingsError

ENV_PREFIX = "ECOM_"
Role = Literal["admin", "generator", "extractor", "publisher"]
ROLES: tuple[Role, ...] = ("admin", "generator", "extractor", "publisher")


def project_dir() -> Path:
    """The project checkout: `ECOM_HOME`, else the folder that holds `core/`."""
    home = os.environ.get("ECOM_HOME")
    return Path(home).resolve() if home else Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = ""

    def __repr__(self) -> str:  # never print a password, not even by accident
        return f"Credentials(user={self.user!r}, password='***')"


class Settings(BaseSettings):
    """Every knob of the platform. Field `x` is the environment variable `ECOM_X`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=(project_dir() / ".local" / "credentials.env", project_dir() / ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- databases -------------------------------------------------------------
    dialect: Literal["postgresql", "mssql"] = "postgresql"
    db_host: str = "127.0.0.1"
    db_port: int | None = Field(default=None, ge=1, le=65535, description="default 55432 (pg) / 1433 (mssql)")
    source_db: str = "ecom_db"
    warehouse_db: str = "ecom_dwh"
    admin_user: str = "ecom_admin"
    admin_password: SecretStr = SecretStr("")
    generator_user: str = "ecom_generator"
    generator_password: SecretStr = SecretStr("")
    extractor_user: str = "ecom_extractor"
    extractor_password: SecretStr = SecretStr("")
    publisher_user: str = "ecom_publisher"
    publisher_password: SecretStr = SecretStr("")
    connect_timeout_s: int = Field(default=10, ge=1, le=300)

    # PostgreSQL TLS
    pg_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    pg_sslrootcert: str | None = None

    # SQL Server drivers and TLS: encrypted by default; trust the certificate only when told.
    mssql_odbc_driver: str = "ODBC Driver 18 for SQL Server"
    mssql_encrypt: bool = True
    mssql_trust_server_certificate: bool = False
    mssql_trust_store: str | None = None
    mssql_trust_store_password: SecretStr = SecretStr("")
    mssql_host_name_in_certificate: str | None = None

    # --- lake and Spark ----------------------------------------------------------
    lake_root: str = "lake"
    spark_master: str = "local[2]"
    spark_driver_memory: str = "3g"
    spark_shuffle_partitions: int = Field(default=4, ge=1)
    spark_ui: bool = False
    jdbc_fetchsize: int = Field(default=10_000, ge=1)
    jdbc_batchsize: int = Field(default=10_000, ge=1)
    jdbc_partitions: int = Field(default=2, ge=1)

    # --- pipeline behaviour ------------------------------------------------------
    extract_overlap_s: int = Field(default=300, ge=0, description="re-read window behind the watermark")
    total_tolerance: str = "0.01"
    orphan_grace_hours: int = Field(default=24, ge=0)
    session_gap_minutes: int = Field(default=30, ge=1)

    # --- quality gates -----------------------------------------------------------
    gx_root: str | None = Field(default=None, description="GX file context root; default expectations/")

    # --- notifications -----------------------------------------------------------
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=10)
    webhook_retries: int = Field(default=3, ge=0, le=10)

    # --- local cluster -----------------------------------------------------------
    local_pg_port: int = Field(default=55432, ge=1024, le=65535)

    @field_validator("lake_root")
    @classmethod
    def _absolute_lake(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if "://" in value or value.startswith("file:"):
            return value.rstrip("/")
        path = Path(value)
        return str(path if path.is_absolute() else (project_dir() / path).resolve())

    @field_validator("webhook_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value.split(':', 1)[0]!r} scheme")
        return value

    # --- derived -----------------------------------------------------------------
    @property
    def port(self) -> int:
        if self.db_port is not None:
            return self.db_port
        return self.local_pg_port if self.dialect == "postgresql" else 1433

    @property
    def home(self) -> Path:
        return project_dir()

    @property
    def local_dir(self) -> Path:
        return self.home / ".local"

    @property
    def is_local_lake(self) -> bool:
        return "://" not in self.lake_root or self.lake_root.startswith("file:")

    def credentials(self, role: Role) -> Credentials:
        """User and password of one role; a missing password names its variable."""
        user = getattr(self, f"{role}_user")
        password = getattr(self, f"{role}_password").get_secret_value()
        if not password:
            var = f"{ENV_PREFIX}{role.upper()}_PASSWORD"
            hint = "run `ecom db up` to create the local cluster and its credentials, or set it in .env"
            raise SettingsError(f"{var} is not set: {hint}")
        return Credentials(user=user, password=password)

    def database_for(self, role: Role) -> str:
        return self.warehouse_db if role == "publisher" else self.source_db


def _explain(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        var = f"{ENV_PREFIX}{field.upper()}"
        given = e.get("input")
        shown = "" if given is None or "password" in field else f" (got {given!r})"
        parts.append(f"{var}: {e['msg']}{shown}")
    return "invalid setting " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; raise `SettingsError` naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        raise SettingsError(_explain(err)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached). Tests call `load_settings` directly."""
    return load_settings()
