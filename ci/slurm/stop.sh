#!/usr/bin/env bash
# ci/slurm/stop.sh: stop the cluster ci/slurm/start.sh started (same SLURM_CI_DIR), by the pids in
# its pid files, in reverse order of start. Jobs are cancelled first (a bounded wait), so no job's
# processes are left behind. Idempotent: nothing running is fine. SLURM_CI_PURGE=1 also deletes
# the folder (state, logs, accounting database). Ends by printing STOPPED.
set -uo pipefail
DIR=${SLURM_CI_DIR:-/tmp/onss-slurm}
WAIT=${SLURM_CI_WAIT_S:-60}
export SLURM_CONF=$DIR/etc/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin

running() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
pid_of() { [ -s "$1" ] && tr -dc '0-9' <"$1" || true; }
halt() {  # halt NAME PIDFILE: TERM, up to $WAIT s, then KILL
  local name=$1 pid
  pid=$(pid_of "$2")
  running "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  local deadline=$((SECONDS + WAIT))
  while running "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null; echo "killed $name (pid $pid)"; return 0; fi
    sleep 0.2
  done
  echo "stopped $name (pid $pid)"
}

if [ -f "$SLURM_CONF" ] && running "$(pid_of "$DIR/run/slurmctld.pid")"; then
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    timeout 10 scancel --full $jobs 2>/dev/null || true
    deadline=$((SECONDS + WAIT))
    while [ -n "$(timeout 10 squeue -h -o %A 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    echo "cancelled jobs: $(echo $jobs)"
  fi
fi
for f in "$DIR"/run/slurmd-*.pid; do
  [ -e "$f" ] && halt "slurmd $(basename "$f" .pid)" "$f"
done
halt slurmctld "$DIR/run/slurmctld.pid"
halt slurmdbd "$DIR/run/slurmdbd.pid"
halt mariadbd "$DIR/mysql-run/mariadbd.pid"
halt munged "$DIR/munge/munged.pid"
rm -f "$DIR"/run/*.pid
for f in slurm.conf gres.conf slurmdbd.conf; do  # only the links start.sh made
  [ "$(readlink "/etc/slurm/$f" 2>/dev/null)" = "$DIR/etc/$f" ] && rm -f "/etc/slurm/$f"
done
if [ "${SLURM_CI_PURGE:-0}" = 1 ]; then rm -rf "$DIR" && echo "removed $DIR"; fi
echo "STOPPED"
