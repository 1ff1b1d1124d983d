#!/usr/bin/env bash
# Airflow for the ecom lakehouse: one script to start, stop, inspect and talk to it.
#
#   orchestration/airflow.sh init               migrate the metadata DB, create the pools (idempotent)
#   orchestration/airflow.sh start              init, then api-server (127.0.0.1:8085), scheduler,
#                                               dag-processor, triggerer as daemons; waits until healthy
#   orchestration/airflow.sh stop               stop them all; verifies that no process is left
#   orchestration/airflow.sh status             which components run, the health endpoint, leftovers
#   orchestration/airflow.sh logs [component] [-f]   tail a component's log (all without a name)
#   orchestration/airflow.sh env                the environment, as `export` lines (eval-able)
#   orchestration/airflow.sh <anything else>    the `airflow` CLI with this environment, e.g.
#                                               `orchestration/airflow.sh dags list`
#
# Settings (environment): ECOM_AIRFLOW_HOME (default orchestration/airflow_home), ECOM_AIRFLOW_PORT
# (8085), ECOM_AIRFLOW_PARALLELISM (3: sized for 2 cores), ECOM_AIRFLOW_ALL_ADMINS (False: log in as
# admin with the generated password; True: no login, everyone is admin — local use only).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(dirname "$HERE")"
VENV="${ECOM_VENV:-$PROJECT/.venv}"
AIRFLOW_BIN="$VENV/bin/airflow"
PY="$VENV/bin/python"
COMPONENTS=(api-server scheduler dag-processor triggerer)

export AIRFLOW_HOME="${ECOM_AIRFLOW_HOME:-$HERE/airflow_home}"
PORT="${ECOM_AIRFLOW_PORT:-8085}"
RUN_DIR="$AIRFLOW_HOME/run"
SERVICE_LOGS="$AIRFLOW_HOME/logs/services"
PASSWORDS="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
HEALTH_URL="http://127.0.0.1:$PORT/api/v2/monitor/health"

# --- the one Airflow configuration (environment overrides airflow.cfg) ------------------------
export PATH="$VENV/bin:$PATH"
export AIRFLOW__CORE__DAGS_FOLDER="$HERE/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$AIRFLOW_HOME/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${ECOM_AIRFLOW_PARALLELISM:-3}"
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=2
export AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG=1
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=True
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$PORT/execution/"
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="${ECOM_AIRFLOW_ALL_ADMINS:-False}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$PASSWORDS"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$PORT"
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=60
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=60
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$AIRFLOW_HOME/logs"
export GX_ANALYTICS_ENABLED=false
# The CLI warns on stdout that graphviz (optional: DAG images) is missing, spoiling `-o json`.
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Could not import graphviz:UserWarning"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"

say() { printf '%s\n' "$*"; }
die() { printf 'airflow.sh: %s\n' "$*" >&2; exit 1; }

need_venv() {
	[[ -x "$AIRFLOW_BIN" ]] || die "no Airflow in $VENV — run \`make setup\` first"
}

pidfile() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# The pid of a running component (its session leader), or nothing. A pid file whose pid now
# belongs to some other program (pid reuse after a reboot or crash) does not count.
running_pid() {
	local f pid
	f="$(pidfile "$1")"
	[[ -f "$f" ]] || return 1
	pid="$(cat "$f")"
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	ps -p "$pid" -o args= 2>/dev/null | grep -q airflow || return 1
	printf '%s' "$pid"
}

# Every process this instance started: the members of each component's session (setsid at
# launch), and anything that inherited our marker variable — task processes, `ecom` commands,
# Spark JVMs — even if it started a session of its own. Never this script or its callers.
instance_pids() {
	local c pid sids=""
	for c in "${COMPONENTS[@]}"; do
		if pid="$(running_pid "$c")"; then sids="$sids $pid"; fi
	done
	"$PY" - "$AIRFLOW_HOME" "$$" $sids <<-'EOF'
		import os, sys
		marker = f"ECOM_AIRFLOW_INSTANCE={sys.argv[1]}".encode()
		exclude, sids = {os.getpid(), os.getppid(), int(sys.argv[2])}, {int(s) for s in sys.argv[3:]}
		for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
		    if not entry.isdigit() or int(entry) in exclude:
		        continue
		    pid = int(entry)
		    try:
		        with open(f"/proc/{pid}/stat", "rb") as f:
		            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
		                continue  # a zombie: already dead, waiting to be reaped
		        if os.getsid(pid) in sids:
		            print(pid)
		            continue
		        with open(f"/proc/{pid}/environ", "rb") as f:
		            if marker in f.read().split(b"\0"):
		                print(pid)
		    except (OSError, ProcessLookupError):
		        continue
	EOF
}

# Tasks the metadata DB still calls running although no process runs them (see service.py).
settle() {
	mkdir -p "$SERVICE_LOGS"
	PYTHONPATH="$PROJECT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m orchestration.service settle 2>>"$SERVICE_LOGS/settle.log" ||
		say "  (could not settle interrupted tasks; see $SERVICE_LOGS/settle.log)"
}

cmd_init() {
	need_venv
	mkdir -p "$AIRFLOW_HOME" "$RUN_DIR" "$SERVICE_LOGS" "$AIRFLOW__CORE__PLUGINS_FOLDER"
	say "› Airflow home $AIRFLOW_HOME"
	"$AIRFLOW_BIN" db migrate >"$SERVICE_LOGS/db-migrate.log" 2>&1 ||
		{ tail -n 30 "$SERVICE_LOGS/db-migrate.log" >&2; die "airflow db migrate failed (log: $SERVICE_LOGS/db-migrate.log)"; }
	say "✔ metadata DB migrated: $AIRFLOW_HOME/airflow.db"
	"$AIRFLOW_BIN" pools import "$HERE/pools.json" >>"$SERVICE_LOGS/db-migrate.log" 2>&1 ||
		{ tail -n 30 "$SERVICE_LOGS/db-migrate.log" >&2; die "creating the pools failed"; }
	say "✔ pools (one slot each): $("$PY" -c 'import json,sys; print(", ".join(json.load(open(sys.argv[1]))))' "$HERE/pools.json")"
}

healthy() {
	local body
	body="$(curl -fsS --max-time 3 "$HEALTH_URL" 2>/dev/null)" || return 1
	"$PY" - "$body" <<-'EOF'
		import json, sys
		h = json.loads(sys.argv[1])
		sys.exit(0 if all(v.get("status") == "healthy" for v in h.values() if isinstance(v, dict)) else 1)
	EOF
}

launch() {
	local name="$1"
	shift
	# New session (setsid) so that `stop` can find every descendant; the marker variable
	# finds the rest even if a child starts a session of its own.
	ECOM_AIRFLOW_INSTANCE="$AIRFLOW_HOME" nohup "$PY" -c \
		'import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' \
		"$AIRFLOW_BIN" "$@" >>"$SERVICE_LOGS/$name.log" 2>&1 </dev/null &
	printf '%s' "$!" >"$(pidfile "$name")"
	say "  started $name (pid $!)"
}

cmd_start() {
	local c pid
	if ! command -v curl >/dev/null; then die "curl is needed to check health"; fi
	if [[ -z "$(running_pid api-server || true)" ]] &&
		curl -fsS --max-time 2 "$HEALTH_URL" >/dev/null 2>&1; then
		die "something else already serves 127.0.0.1:$PORT — stop it or set ECOM_AIRFLOW_PORT"
	fi
	cmd_init
	local alive=0
	for c in "${COMPONENTS[@]}"; do
		if running_pid "$c" >/dev/null; then alive=1; fi
	done
	if [[ $alive == 0 ]]; then settle; fi
	say "› starting Airflow components"
	for c in "${COMPONENTS[@]}"; do
		if pid="$(running_pid "$c")"; then
			say "  $c already running (pid $pid)"
			continue
		fi
		case "$c" in
		api-server) launch api-server api-server --host 127.0.0.1 --port "$PORT" --workers 1 ;;
		*) launch "$c" "$c" ;;
		esac
	done
	say "› waiting for $HEALTH_URL"
	for _ in $(seq 1 90); do
		if healthy; then
			say "✔ Airflow is up: http://127.0.0.1:$PORT"
			if [[ "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS,,}" == "true" ]]; then
				say "  login: none (ECOM_AIRFLOW_ALL_ADMINS=True: everyone is admin; local use only)"
			else
				say "  login: admin — password in $PASSWORDS"
			fi
			say "  logs: $SERVICE_LOGS  (orchestration/airflow.sh logs [component])"
			say "  DAGs start paused: orchestration/airflow.sh dags unpause <dag_id>"
			return 0
		fi
		for c in "${COMPONENTS[@]}"; do
			running_pid "$c" >/dev/null || { tail -n 20 "$SERVICE_LOGS/$c.log" >&2; die "$c exited during start-up (log: $SERVICE_LOGS/$c.log)"; }
		done
		sleep 2
	done
	die "not healthy after 90 checks; see orchestration/airflow.sh status and logs"
}

cmd_stop() {
	local pids left="" c pid
	pids="$(instance_pids)"
	if [[ -z "$pids" ]]; then
		say "✔ Airflow is not running"
		rm -f "$RUN_DIR"/*.pid
		return 0
	fi
	say "› stopping Airflow ($(echo "$pids" | wc -l | tr -d ' ') processes)"
	for c in "${COMPONENTS[@]}"; do
		if pid="$(running_pid "$c")"; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
	done
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null || true
	for _ in $(seq 1 30); do
		left="$(instance_pids)"
		[[ -z "$left" ]] && break
		sleep 1
	done
	if [[ -n "$left" ]]; then
		say "  still running after 30 s, killing: $(echo $left)"
		# shellcheck disable=SC2086
		kill -KILL $left 2>/dev/null || true
		for _ in $(seq 1 10); do
			sleep 1
			left="$(instance_pids)"
			[[ -z "$left" ]] && break
		done
	fi
	rm -f "$RUN_DIR"/*.pid
	[[ -z "$left" ]] || die "processes left behind: $(echo $left)"
	say "✔ Airflow stopped; no process left"
	settle
}

cmd_status() {
	local c pid any=0 strays
	for c in "${COMPONENTS[@]}"; do
		if pid="$(running_pid "$c")"; then
			say "  $c: running (pid $pid)"
			any=1
		else
			say "  $c: stopped"
		fi
	done
	if body="$(curl -fsS --max-time 3 "$HEALTH_URL" 2>/dev/null)"; then
		say "  health: $body"
	else
		say "  health: $HEALTH_URL unreachable"
	fi
	strays="$(instance_pids)"
	if [[ $any == 0 && -n "$strays" ]]; then
		say "  leftover processes of this instance: $(echo $strays) — run: orchestration/airflow.sh stop"
	fi
	say "  home: $AIRFLOW_HOME  logs: $SERVICE_LOGS"
	[[ $any == 1 ]] && healthy
}

cmd_logs() {
	local follow=0 names=()
	for a in "$@"; do
		case "$a" in
		-f | --follow) follow=1 ;;
		*) names+=("$a") ;;
		esac
	done
	[[ ${#names[@]} -gt 0 ]] || names=("${COMPONENTS[@]}")
	local files=()
	for c in "${names[@]}"; do
		[[ " ${COMPONENTS[*]} db-migrate " == *" $c "* ]] || die "unknown component '$c': one of ${COMPONENTS[*]} db-migrate"
		[[ -f "$SERVICE_LOGS/$c.log" ]] && files+=("$SERVICE_LOGS/$c.log")
	done
	[[ ${#files[@]} -gt 0 ]] || die "no logs yet under $SERVICE_LOGS"
	if [[ $follow == 1 ]]; then exec tail -n 50 -F "${files[@]}"; fi
	tail -n 50 "${files[@]}"
}

cmd_env() {
	"$PY" -c '
import os, re, shlex
for k in sorted(os.environ):
    if re.fullmatch(r"AIRFLOW_HOME|AIRFLOW__[A-Z_]+|GX_ANALYTICS_ENABLED|SPARK_LOCAL_IP", k):
        print(f"export {k}={shlex.quote(os.environ[k])}")'
}

case "${1:-}" in
init) cmd_init ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
logs) shift && cmd_logs "$@" ;;
env) cmd_env ;;
"" | -h | --help | help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' ;;
*)
	need_venv
	exec "$AIRFLOW_BIN" "$@"
	;;
esac
