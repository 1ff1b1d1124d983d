"""`ecom sql`: the real `spark-sql` shipped with pyspark, with the project's conf and catalog.

The catalog is in-memory per JVM (Derby in memory), so this shell works while a pipeline
job holds its own session. At start it runs an init file that registers every lake table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from core.lake import catalog_sql
from core.settings import Settings
from core.spark import spark_conf, spark_env

_NOISE = ("Time taken:", "WARNING: Using incubator modules")


def command(settings: Settings, init_file: str, query: str | None, file: str | None, extra: list[str]) -> list[str]:
    env = spark_env(settings)
    binary = Path(env["SPARK_HOME"]) / "bin" / "spark-sql"
    conf = spark_conf(settings, "ecom-sql")
    cmd = [str(binary), "--master", conf.pop("spark.master"), "--jars", conf.pop("spark.jars")]
    cmd += ["--driver-memory", conf.pop("spark.driver.memory")]
    cmd += ["--driver-java-options", conf.pop("spark.driver.extraJavaOptions")]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += ["-S", "-i", init_file]
    if query is not None:
        cmd += ["-e", query]
    if file is not None:
        cmd += ["-f", file]
    return cmd + extra


def run(settings: Settings, query: str | None = None, file: str | None = None, extra: list[str] | None = None) -> int:
    settings.local_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", dir=settings.local_dir, delete=False) as fh:
        fh.write(";\n".join(catalog_sql(settings)) + ";\n")
        init_file = fh.name
    try:
        env = {**os.environ, **spark_env(settings)}
        cmd = command(settings, init_file, query, file, extra or [])
        if query is None and file is None:  # interactive: hand the terminal over as is
            return subprocess.run(cmd, env=env, check=False).returncode
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:  # keep errors, drop the shell's timing chatter
            if not line.startswith(_NOISE):
                sys.stderr.write(line)
        return proc.wait()
    finally:
        os.unlink(init_file)
