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
