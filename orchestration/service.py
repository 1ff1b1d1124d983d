"""Metadata-DB chores of `orchestration/airflow.sh`: settle the tasks a stop interrupted.

When Airflow is stopped (or dies) while a task runs, the metadata DB still says `running`:
a run of a `max_active_runs=1` DAG then blocks every later run until the scheduler's orphan
check notices, minutes after the next start. `airflow.sh stop` — and `start`, when no
component is alive — settle them at once, the way the scheduler settles a task whose
process vanished: a running task gets its retry (or fails when none is left), a queued one
that never started is handed back to the scheduler. Deferred tasks are left alone: the
triggerer resumes them.

    .venv/bin/python -m orchestration.service settle    # with airflow.sh's environment
"""

from __future__ import annotations

import sys


def settle_interrupted() -> list[str]:
    """Settle task instances no process runs any more; one line per task changed."""
    from airflow._shared.timezones.timezone import utcnow
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState as S

    changed = []
    now = utcnow()
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.state.in_([S.RUNNING, S.RESTARTING, S.QUEUED])).all()
        for ti in tis:
            before = ti.state
            if before == S.QUEUED:
                ti.state = None  # never started: the scheduler queues it again
            else:
                ti.state = S.UP_FOR_RETRY if ti.try_number <= ti.max_tries else S.FAILED
                ti.end_date = now
            changed.append(f"{ti.dag_id}.{ti.task_id} ({ti.run_id}): {before} → {ti.state or 'scheduled again'}")
    return changed


def main(argv: list[str]) -> int:
    if argv != ["settle"]:
        print("usage: python -m orchestration.service settle", file=sys.stderr)
        return 2
    changed = settle_interrupted()
    for line in changed:
        print(f"  settled {line}")
    print(f"✔ {len(changed)} interrupted task(s) settled" if changed else "✔ no interrupted task")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
