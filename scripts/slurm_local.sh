#!/usr/bin/env bash
# A single-node Slurm cluster in a folder, for tests and CI (needs root and the Debian
# packages slurm-wlm + munge). Usage:
#   scripts/slurm_local.sh start DIR   # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   scripts/slurm_local.sh stop DIR    # stops the three daemons started in DIR
# Commands talk to it with SLURM_CONF=DIR/slurm.conf. Ports are picked free at start.
set -euo pipefail
cmd=${1:?start|stop}; D=$(mkdir -p "${2:?DIR}" && cd "$2" && pwd)

stop() {
  for f in slurmd slurmctld munged; do
    if [ -s "$D/$f.pid" ]; then kill "$(cat "$D/$f.pid")" 2>/dev/null || true; fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi

mkdir -p "$D/state" "$D/spool" "$D/munge"
chmod 700 "$D/munge"
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)
read -r p1 p2 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
[ -f "$D/munge/munge.key" ] || { dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$D/munge/munge.key"; }
cat > "$D/slurm.conf" <<CONF
ClusterName=lmconsole-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$p1
SlurmdPort=$p2
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MinJobAge=300
KillWait=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
munged --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket" --pid-file="$D/munged.pid" \
  --log-file="$D/munged.log" --seed-file="$D/munge/seed" -f
slurmctld -f "$D/slurm.conf" -i
slurmd -f "$D/slurm.conf"
export SLURM_CONF="$D/slurm.conf"
for _ in $(seq 1 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then echo "slurm up: SLURM_CONF=$D/slurm.conf"; exit 0; fi
  sleep 0.5
done
echo "slurm did not come up; logs in $D" >&2
sinfo >&2 || true; tail -5 "$D/slurmctld.log" "$D/slurmd.log" >&2 || true
exit 1
