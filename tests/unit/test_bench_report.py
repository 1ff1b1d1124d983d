"""The bench report states its own run time, judged against the profile's goal; its cases pick their runs."""

from bench.report import Figure, Report

MACHINE = {
    "cores": 2,
    "memory_gib": 24,
    "os": "linux",
    "python": "3.11",
    "pyspark": "4.2",
    "java": "17",
    "load_average": "0",
}


def test_the_full_profile_is_judged_against_an_hour() -> None:
    report = Report(profile="full", machine=MACHINE, run_time_goal_min=60)
    report.add(Figure("x", 1.0, "s"))
    report.case_seconds.update(first=30 * 60.0, second=20 * 60.0)
    assert "Run time: 50.0 min; goal < 60 min: met (per case, min: first 30.0, second 20.0)" in report.markdown()
    report.case_seconds["third"] = 11 * 60.0
    assert "Run time: 61.0 min; goal < 60 min: **not met**" in report.markdown()


def test_the_full_profile_has_the_goal_of_an_hour() -> None:
    from bench.cases import PROFILES

    assert PROFILES["full"]["run_time_goal_min"] == 60
    assert all("run_time_goal_min" not in p for name, p in PROFILES.items() if name != "full")


def test_other_profiles_print_their_run_time_without_a_goal() -> None:
    report = Report(profile="quick", machine=MACHINE)
    report.case_seconds["only"] = 90.0
    assert "Run time: 1.5 min (per case, min: only 1.5)" in report.markdown()


def test_a_gold_run_is_a_full_rebuild_only_when_every_mart_rebuilt_in_full() -> None:
    from bench.lakehouse import LayerRunTime
    from bench.pipeline import rebuilt_in_full
    from core.ledger import RunRecord

    def gold(*modes: str) -> LayerRunTime:
        records = [RunRecord("r", "gold", f"mart{i}", details={"mode": mode}) for i, mode in enumerate(modes)]
        return LayerRunTime("gold", 1.0, records)

    assert rebuilt_in_full(gold("full", "full", "full", "full"))
    assert not rebuilt_in_full(gold("full", "incremental", "full", "full"))
    assert not rebuilt_in_full(gold())  # no mart ran: nothing was rebuilt


def test_a_table_run_is_printed_with_its_phases() -> None:
    from bench.pipeline import phases
    from core.ledger import RunRecord

    rec = RunRecord("r", "silver", "orders", seconds=12.34, details={"timings": {"classify": 3.21, "write": 4.0}})
    assert phases(rec) == "orders 12.3s (classify 3.2, write 4.0)"
    assert phases(rec, "60 keys") == "orders 12.3s (60 keys: classify 3.2, write 4.0)"
    assert phases(RunRecord("r", "gold", "sessions", seconds=1.0), "all keys") == "sessions 1.0s (all keys)"


def test_a_silver_merge_is_printed_with_the_rows_it_copied() -> None:
    from bench.pipeline import copied, phases
    from core.ledger import RunRecord

    merged = RunRecord("r", "silver", "clickstream_events", seconds=4.0, details={"rows_copied": 252_759})
    assert phases(merged, copied(merged)) == "clickstream_events 4.0s (252,759 rows copied)"
    assert copied(RunRecord("r", "silver", "customers", seconds=1.0, details={"upserted": 3})) == ""


def test_a_fresh_command_run_is_read_back_from_its_summary(tmp_path) -> None:
    """The bench loads its history by `ecom run <layer> --summary-json`: the summary gives each
    layer's own seconds and the records as `ops.runs` holds them, read back whole."""
    import json

    from core.ledger import RunRecord
    from core.runner import write_summary

    rec = RunRecord(
        "r", "gold", "customer_360", rows_out=7, seconds=3.5, details={"mode": "full", "timings": {"gate": 0.5}}
    )
    rec.finish("succeeded")
    path = tmp_path / "summary.json"
    write_summary(str(path), [rec], None, {"gold": 12.25})
    body = json.loads(path.read_text())
    assert body["seconds"] == {"gold": 12.25}
    back = RunRecord.from_row(json.loads(json.dumps(body["tables"][0])))
    assert (back.table_name, back.status, back.rows_out, back.details) == ("customer_360", "succeeded", 7, rec.details)
    assert back.seconds == rec.seconds


def test_the_commands_footprint_is_the_fresh_loads_commands() -> None:
    """Peak RSS, sessions and Spark start per `ecom run` come from the fresh processes of the
    profile's `fresh_load`, once per command (an `ecom run all` ran every layer): a command
    that started two Spark sessions is reported as not met; the start is the median of every
    session the commands started."""
    from bench import lakehouse
    from bench.lakehouse import Lakehouse, LayerRunTime
    from bench.pipeline import command_footprint
    from core.settings import get_settings

    def run(layer: str, peak: int, starts: list[float], command: str = "") -> LayerRunTime:
        return LayerRunTime(
            layer, 10.0, [], 18.0, peak_mib=peak, spark_starts=starts, command=command or f"ecom run {layer}"
        )

    lh = Lakehouse(get_settings(), {}, fresh_load=10, history=10, load_rows={10: 12_345})
    lh.loads[1] = {"bronze": run("bronze", 9999, [99.0])}  # not the fresh load: not reported
    lh.loads[10] = {"bronze": run("bronze", 2000, [9.0]), "silver": run("silver", 4000, [11.0])}
    lakehouse._SHARED["unit"] = lh
    try:
        report = Report(profile="unit", machine=MACHINE)
        command_footprint(report, {"name": "unit"})
        lh.loads[10]["gold"] = run("gold", 3000, [12.0, 14.0])
        twice = Report(profile="unit", machine=MACHINE)
        command_footprint(twice, {"name": "unit"})
        lh.loads[10] = {layer: run(layer, 3500, [8.0], "ecom run all") for layer in ("bronze", "silver", "gold")}
        one = Report(profile="unit", machine=MACHINE)
        command_footprint(one, {"name": "unit"})
    finally:
        lakehouse._SHARED.pop("unit")
    peaks = {f.name: f.value for f in report.figures if "peak RSS" in f.name}
    assert peaks == {"`ecom run bronze` peak RSS": 2000, "`ecom run silver` peak RSS": 4000}
    assert {f.name: f.value for f in one.figures if "peak RSS" in f.name} == {"`ecom run all` peak RSS": 3500}
    assert [(f.value, f.met, f.note) for f in one.figures if f.goal] == [(1, True, "`ecom run all` 1")]
    assert [f.value for f in one.figures if f.name == "Spark session start (median)"] == [8.0]
    assert "loading the 10× history, a batch of 12,345 source rows" in report.figures[0].note
    assert [f.met for f in report.figures if f.goal] == [True]
    assert [(f.value, f.met) for f in twice.figures if f.goal] == [(2, False)]
    assert [f.value for f in twice.figures if f.name == "Spark session start (median)"] == [11.5]  # of 9, 11, 12, 14
    assert [f.value for f in report.figures if f.name == "Spark session start (median)"] == [10.0]
