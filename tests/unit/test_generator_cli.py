"""`ecom generate` input handling: help, and one clear line for every bad input, before any write."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from core.cli import cli
from core.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def generate(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, ["generate", *args], env=env, prog_name="ecom")


def one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_help_lists_the_generator_options() -> None:
    result = generate("--help")
    assert result.exit_code == 0
    assert "Usage: ecom generate [OPTIONS]" in result.output
    for option in ("--stream", "--interval", "--customers", "--products", "--orders", "--events", "--seed",
                   "--defect-rate", "--batch-id"):  # fmt: skip
        assert option in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--customers", "-5"], "-5 is negative"),
        (["--orders", "1.5"], "'1.5' is not a whole number"),
        (["--events", "many"], "'many' is not a whole number"),
        (["--defect-rate", "2"], "--defect-rate"),
        (["--interval", "-1"], "--interval"),
        (["--batch-id", "two words"], "--batch-id must be"),
        (["--nope"], "No such option"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], expected: str) -> None:
    result = generate(*args, ECOM_DB_PORT="1")  # nothing may reach the database
    assert result.exit_code == 2
    assert expected in one_error_line(result)


def test_volumes_from_the_environment_are_checked_too() -> None:
    result = generate(ECOM_GEN_ORDERS="-3", ECOM_DB_PORT="1")
    assert result.exit_code == 2
    assert "ECOM_GEN_ORDERS" in one_error_line(result)


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "http://", "hooks.example.com/x"])
def test_invalid_webhook_url_fails_before_writing(url: str) -> None:
    result = generate("--orders", "1", ECOM_WEBHOOK_URL=url, ECOM_DB_PORT="1")
    assert result.exit_code == 2
    assert "ECOM_WEBHOOK_URL" in one_error_line(result)


def test_unreachable_database_is_one_line() -> None:
    result = generate("--customers", "1", ECOM_DB_HOST="127.0.0.1", ECOM_DB_PORT="1", ECOM_CONNECT_TIMEOUT_S="2")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "cannot connect to postgresql at 127.0.0.1:1" in line and "ECOM_DB_HOST" in line
