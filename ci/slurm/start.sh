#!/usr/bin/env bash
# ci/slurm/start.sh: start a real, throw-away Slurm cluster on this one machine for onss's tests
# (root, no systemd, no cgroups). Debian 12: Slurm 22.05 (slurmctld, slurmd, slurm-client), munge,
# and, for sacct, slurmdbd with a private MariaDB. Idempotent: a running, healthy cluster is left
# as it is. Every wait is bounded (SLURM_CI_WAIT_S, 60 s); on failure the daemons' logs are printed.
# Ends by printing `READY SLURM_CONF=...`. Stop it with ci/slurm/stop.sh (same environment).
#
# Environment (defaults):
#   SLURM_CI_DIR=/tmp/onss-slurm  state, config, logs, sockets, database. It must be reachable by
#                                 the munge and mysql users (munged and mariadbd drop root and
#                                 refuse a folder under /root, which is mode 700).
#   SLURM_CI_NODES=2  SLURM_CI_GPUS=2 (per node)  SLURM_CI_CPUS=4 (per node)  SLURM_CI_MEM_MB=4000
#   SLURM_CI_ACCOUNTING=1         0: no MariaDB/slurmdbd (faster; sacct then knows nothing)
#   SLURM_CI_INSTALL=1            0: never apt-get; missing packages are an error
#   SLURM_CI_PORT=16817           slurmctld; slurmdbd +2, MariaDB +10, slurmd of node i +100+i
#                                 (off Slurm's usual 6817, so another test cluster can coexist)
#
# Facts that matter (found making it work; a project on Slurm must handle them):
# - Nodes n1..nN are all 127.0.0.1, one slurmd each on its own port (slurmd -N nI).
# - munge runs on a private socket ($DIR/munge/munge.socket, AuthInfo=socket=...), so nothing of
#   the machine's own munge is touched; clients find it through slurm.conf.
# - The GPUs are fake: character devices made with mknod under $DIR/dev/nI (Slurm only stat()s
#   them), declared as GRES gpu, so Slurm sets CUDA_VISIBLE_DEVICES/SLURM_STEP_GPUS per task as on
#   a real GPU node. GPU numbers are per node: a task on n2 sees CUDA_VISIBLE_DEVICES=0 like one on
#   n1, so a label needs SLURMD_NODENAME too. --gpus-per-task=1 gives one GPU a task
#   (--gpus-per-node alone gives every task all of the node's GPUs).
# - A requeued job waits about 2 minutes (Reason=BeginTime) before it may start again.
# - ProctrackType=proctrack/linuxproc: a process whose parent exits escapes scancel, so job
#   scripts must `exec` their worker.
# - Without accounting a cancelled job's state is unknown to sacct (submitit then waits for ever):
#   decide success from the run folder, never from the scheduler alone.
# - flock is unreliable on NFS (and needs a mount option on Lustre): a run folder shared by nodes
#   needs another lock (an O_EXCL lease file). This cluster's folders are local, so it never shows.
set -euo pipefail

DIR=${SLURM_CI_DIR:-/tmp/onss-slurm}
NODES=${SLURM_CI_NODES:-2}
GPUS=${SLURM_CI_GPUS:-2}
CPUS=${SLURM_CI_CPUS:-4}
MEM=${SLURM_CI_MEM_MB:-4000}
ACCOUNTING=${SLURM_CI_ACCOUNTING:-1}
INSTALL=${SLURM_CI_INSTALL:-1}
PORT=${SLURM_CI_PORT:-16817}
WAIT=${SLURM_CI_WAIT_S:-60}
DBD_PORT=$((PORT + 2))
DB_PORT=$((PORT + 10))
HERE=$(cd "$(dirname "$0")" && pwd)
export SLURM_CONF=$DIR/etc/slurm.conf
SOCK=$DIR/munge/munge.socket

START=${EPOCHREALTIME/,/.}
say() { printf '[onss-slurm %6.1fs] %s\n' "$(awk -v a="$START" -v b="${EPOCHREALTIME/,/.}" 'BEGIN{print b-a}')" "$*"; }
fail() {
  say "FAILED: $*"
  for f in "$DIR"/log/*.log "$DIR"/munge/*.log "$DIR"/mysql-run/*.log; do
    [ -s "$f" ] && { echo "---- $f (last 20 lines)"; tail -n 20 "$f"; }
  done
  "$HERE/stop.sh" >/dev/null 2>&1 || true  # leave no half-started daemon or /etc/slurm link behind
  exit 1
}
running() {  # running PID: the process exists and is not a zombie (kill -0 succeeds on zombies)
  [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
pid_of() { [ -s "$1" ] && tr -dc '0-9' <"$1" || true; }
await() {  # await WHAT CMD...: poll CMD every 0.2 s for at most $WAIT s
  local what=$1 deadline=$((SECONDS + WAIT)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what not ready after ${WAIT}s"
    sleep 0.2
  done
  say "$what up"
}
nodes_up() { [ "$(sinfo -h -N -o %T 2>/dev/null | grep -c -E '^(idle|mixed|allocated)')" -ge "$NODES" ]; }

[ "$(id -u)" = 0 ] || { echo "ci/slurm/start.sh: needs root (munged, slurmd and mariadbd switch users)" >&2; exit 2; }

# ---- packages ------------------------------------------------------------------------------------
missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have slurmctld || missing+=(slurmctld)
have slurmd || missing+=(slurmd)
have sbatch || missing+=(slurm-client)
have munged || missing+=(munge)
if [ "$ACCOUNTING" = 1 ]; then
  have slurmdbd || missing+=(slurmdbd)
  have mariadbd || missing+=(mariadb-server)
fi
if [ ${#missing[@]} -gt 0 ]; then
  [ "$INSTALL" = 1 ] || fail "missing packages (SLURM_CI_INSTALL=0 forbids apt-get): ${missing[*]}"
  command -v apt-get >/dev/null || fail "missing packages and no apt-get: ${missing[*]}"
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"${TMPDIR:-/tmp}/onss-slurm-apt.log" 2>&1 \
    || { tail -n 20 "${TMPDIR:-/tmp}/onss-slurm-apt.log"; fail "apt-get install ${missing[*]} failed"; }
fi
export PATH=$PATH:/usr/sbin:/sbin
say "$(slurmctld -V), $(munged -V 2>&1 | head -n 1)"

mkdir -p "$DIR"/{etc,log,run,spool/ctld,munge,dev}
chmod 0755 "$DIR"

# ---- already running? ----------------------------------------------------------------------------
if running "$(pid_of "$DIR/run/slurmctld.pid")" && scontrol ping 2>/dev/null | grep -q UP && nodes_up; then
  say "already running"
  echo "READY SLURM_CONF=$SLURM_CONF"
  exit 0
fi
# whatever a half-finished earlier start left behind: stop it and start clean (config may differ)
"$HERE/stop.sh" >/dev/null 2>&1 || true

# ---- configuration -------------------------------------------------------------------------------
HOST=$(hostname -s)
{
  echo "# written by onss ci/slurm/start.sh: a one-machine test cluster"
  echo "ClusterName=onss"
  echo "SlurmctldHost=$HOST(127.0.0.1)"
  echo "SlurmctldPort=$PORT"
  echo "SlurmUser=root"
  echo "AuthType=auth/munge"
  echo "CredType=cred/munge"
  echo "AuthInfo=socket=$SOCK"
  echo "MpiDefault=none"
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_Core"
  echo "SchedulerType=sched/backfill"
  echo "SlurmdParameters=config_overrides"  # more CPUs than the machine has
  echo "ReturnToService=2"
  echo "SlurmdTimeout=30"
  echo "KillWait=5"
  echo "MinJobAge=600"
  echo "MailProg=/bin/true"
  echo "JobCompType=jobcomp/none"
  [ "$GPUS" -gt 0 ] && echo "GresTypes=gpu"
  if [ "$ACCOUNTING" = 1 ]; then
    echo "AccountingStorageType=accounting_storage/slurmdbd"
    echo "AccountingStorageHost=127.0.0.1"
    echo "AccountingStoragePort=$DBD_PORT"
    echo "AccountingStoragePass=$SOCK"
    echo "AccountingStorageTRES=gres/gpu"
    echo "JobAcctGatherType=jobacct_gather/linux"
    echo "JobAcctGatherFrequency=30"
  else
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobAcctGatherType=jobacct_gather/none"
  fi
  echo "StateSaveLocation=$DIR/spool/ctld"
  echo "SlurmdSpoolDir=$DIR/spool/%n"
  echo "SlurmctldPidFile=$DIR/run/slurmctld.pid"
  echo "SlurmdPidFile=$DIR/run/slurmd-%n.pid"
  echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
  echo "SlurmdLogFile=$DIR/log/slurmd-%n.log"
} >"$SLURM_CONF"
: >"$DIR/etc/gres.conf"
[ "$GPUS" -gt 0 ] && echo "AutoDetect=off" >>"$DIR/etc/gres.conf"
for i in $(seq 1 "$NODES"); do
  mkdir -p "$DIR/spool/n$i"
  gres=""
  if [ "$GPUS" -gt 0 ]; then
    gres="Gres=gpu:$GPUS"
    mkdir -p "$DIR/dev/n$i"
    for g in $(seq 0 $((GPUS - 1))); do
      # NVIDIA's major number; a distinct minor for each fake GPU. Nothing ever opens them.
      [ -c "$DIR/dev/n$i/nvidia$g" ] || mknod "$DIR/dev/n$i/nvidia$g" c 195 $(((i - 1) * GPUS + g)) \
        || fail "mknod $DIR/dev/n$i/nvidia$g failed"
    done
    files="$DIR/dev/n$i/nvidia0"
    [ "$GPUS" -gt 1 ] && files="$DIR/dev/n$i/nvidia[0-$((GPUS - 1))]"
    echo "NodeName=n$i Name=gpu File=$files" >>"$DIR/etc/gres.conf"
  fi
  echo "NodeName=n$i NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((PORT + 100 + i)) CPUs=$CPUS RealMemory=$MEM $gres State=UNKNOWN" >>"$SLURM_CONF"
done
echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$SLURM_CONF"
if [ "$ACCOUNTING" = 1 ]; then
  cat >"$DIR/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=onss-ci
CONF
  chmod 600 "$DIR/etc/slurmdbd.conf"  # slurmdbd refuses a config others can read
fi
# plain sbatch/squeue (without SLURM_CONF) find this cluster when /etc/slurm/slurm.conf is free or ours
mkdir -p /etc/slurm
if [ ! -e /etc/slurm/slurm.conf ] || [ "$(readlink /etc/slurm/slurm.conf)" = "$SLURM_CONF" ]; then
  for f in slurm.conf gres.conf slurmdbd.conf; do
    [ -e "$DIR/etc/$f" ] && ln -sfn "$DIR/etc/$f" "/etc/slurm/$f"
  done
fi
say "config in $DIR/etc: $NODES node(s) x $CPUS CPUs x $GPUS GPUs, accounting=$ACCOUNTING"

# ---- munge: private key and socket ---------------------------------------------------------------
chown munge:munge "$DIR/munge"
chmod 0711 "$DIR/munge"  # munged wants its socket's folder searchable by everyone
if [ ! -s "$DIR/munge/munge.key" ]; then
  head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
  chown munge:munge "$DIR/munge/munge.key"
  chmod 0400 "$DIR/munge/munge.key"
fi
runuser -u munge -- munged --socket="$SOCK" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
  --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" || fail "munged did not start"
await munged bash -c "munge -n -S '$SOCK' | unmunge -S '$SOCK'"

# ---- accounting: MariaDB on 127.0.0.1:$DB_PORT with its own data folder, then slurmdbd ------------
if [ "$ACCOUNTING" = 1 ]; then
  DB=$DIR/mysql
  MR=$DIR/mysql-run  # socket, pid and log, written by mariadbd as mysql
  mkdir -p "$DB" "$MR"
  chown mysql:mysql "$DB" "$MR"
  if [ ! -d "$DB/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$DB" --auth-root-authentication-method=socket --skip-test-db \
      >"$DIR/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed"
  fi
  chown -R mysql:mysql "$DB" "$MR"
  setsid mariadbd --no-defaults --user=mysql --datadir="$DB" --socket="$MR/mysqld.sock" --pid-file="$MR/mariadbd.pid" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
    --log-error="$MR/mariadb.log" </dev/null >/dev/null 2>&1 &
  await mariadb mariadb --no-defaults -S "$MR/mysqld.sock" -u root -e 'select 1'
  mariadb --no-defaults -S "$MR/mysqld.sock" -u root -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'onss-ci';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'onss-ci';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || fail "database setup failed"
  slurmdbd || fail "slurmdbd did not start"
  await slurmdbd sacctmgr -n -P list cluster format=cluster
  sacctmgr -i -Q add cluster onss >/dev/null 2>&1 || true
fi

# ---- slurmctld, then one slurmd per node ----------------------------------------------------------
slurmctld || fail "slurmctld did not start"
await slurmctld bash -c "scontrol ping | grep -q UP"
for i in $(seq 1 "$NODES"); do
  slurmd -N "n$i" || fail "slurmd n$i did not start"
done
await "$NODES node(s)" nodes_up

out=$(timeout "$WAIT" srun -N "$NODES" --ntasks-per-node=1 hostname 2>&1) || fail "srun -N$NODES hostname: $out"
say "srun on $NODES node(s): ok"
sinfo -N -o "%N %T %c %m %G"
echo "READY SLURM_CONF=$SLURM_CONF"
