"""`make bench [PROFILE=quick|full]`: run every case, print Markdown, save JSON and a PNG plot."""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from types import FrameType

from bench import cases
from bench.lakehouse import close_shared
from bench.report import Report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--profile", choices=sorted(cases.PROFILES), default="quick")
    parser.add_argument("--only", default=None, help="comma-separated case names")
    args = parser.parse_args(argv)
    report = Report(profile=args.profile, run_time_goal_min=cases.PROFILES[args.profile].get("run_time_goal_min"))
    selected = [c for c in cases.CASES if not args.only or c.__name__ in args.only.split(",")]
    unknown = set(args.only.split(",")) - {c.__name__ for c in cases.CASES} if args.only else set()
    if unknown:
        parser.error(
            f"unknown case(s) {', '.join(sorted(unknown))}: expected some of "
            f"{', '.join(c.__name__ for c in cases.CASES)}"
        )
    failures = []
    signal.signal(signal.SIGTERM, _interrupt)  # a stopped run still prints what it measured and cleans up
    try:
        for case in selected:
            print(f"› {case.__name__}: {(case.__doc__ or '').strip().splitlines()[0]}", flush=True)
            started = time.perf_counter()
            try:
                case(report, cases.PROFILES[args.profile])
            except Exception as exc:  # a broken case is reported, the others still run
                traceback.print_exc()
                failures.append(f"{case.__name__}: {str(exc)[:300]}")
            finally:
                report.case_seconds[case.__name__] = time.perf_counter() - started
    except KeyboardInterrupt:
        failures.append("interrupted: the figures above are the cases that finished")
    finally:
        close_shared()  # the shared lakehouse's databases and lake
    print()
    print(report.markdown())
    path = report.save()
    print(f"\nJSON: {path}" + (f"\nplot: {path.with_suffix('.png')}" if report.curves else ""))
    for f in failures:
        print(f"case failed: {f}", file=sys.stderr)
    return 1 if failures else 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
