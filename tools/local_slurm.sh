#!/usr/bin/env bash
# A throwaway Slurm cluster on this machine: NODES emulated nodes n1..nN (one slurmd each on 127.0.0.1),
# for the launcher tests and for trying launchers/slurm.py. Root on Debian/Ubuntu; no systemd, no cgroups.
#
#   SLURM_DIR=/tmp/slurm bash tools/local_slurm.sh up 2     # installs slurm-wlm + munge if missing
#   export SLURM_CONF=/tmp/slurm/etc/slurm.conf; sinfo; sbatch ...
#   SLURM_DIR=/tmp/slurm bash tools/local_slurm.sh down     # stops what `up` started, by PID
set -euo pipefail
cmd=${1:-}
nodes=${2:-2}
dir=$(realpath -m "${SLURM_DIR:-.slurm}")
conf=$dir/etc/slurm.conf

up() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        echo "installing slurm-wlm and munge (apt-get)..."
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge) >/dev/null
    fi
    mkdir -p "$dir"/{etc,state,log,run,jobs}
    for i in $(seq 1 "$nodes"); do mkdir -p "$dir/spool/n$i"; done
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then  # a munged of our own, stopped by `down`
        runuser -u munge -- /usr/sbin/munged
        for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
        cp /run/munge/munged.pid "$dir/run/munged.pid"
    fi
    {
        cat <<CONF
ClusterName=olmofn
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job runs again 10 s later (Slurm's default is 120 s: the revoked credential's lifetime)
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPort=6817
SlurmctldParameters=preempt_send_user_signal
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
MailProg=/bin/true
InactiveLimit=0
KillWait=30
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
Waittime=0
CONF
        for i in $(seq 1 "$nodes"); do
            echo "NodeName=n$i NodeHostname=n$i NodeAddr=127.0.0.1 Port=$((17000 + i)) CPUs=$(nproc) RealMemory=8000 State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=n[1-$nodes] Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=30"
        echo "PartitionName=high Nodes=n[1-$nodes] MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF"
    } >"$conf"
    export SLURM_CONF=$conf
    /usr/sbin/slurmctld -f "$conf"
    for i in $(seq 1 "$nodes"); do /usr/sbin/slurmd -f "$conf" -N "n$i"; done
    for _ in $(seq 150); do
        [ "$(sinfo -h -p debug -t idle -o %D 2>/dev/null || echo 0)" = "$nodes" ] && break
        sleep 0.2
    done
    sinfo
    echo "export SLURM_CONF=$conf"
}

down() {
    export SLURM_CONF=$conf
    if [ -f "$conf" ]; then
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        [ -n "$jobs" ] && scancel --full $jobs 2>/dev/null || true
        for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
    fi
    pids=""
    for f in "$dir"/run/slurmd-*.pid "$dir/run/slurmctld.pid" "$dir/run/munged.pid"; do
        [ -s "$f" ] && pids="$pids $(cat "$f")"
    done
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    alive=$pids
    for _ in $(seq 50); do
        alive=""
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
        [ -z "$alive" ] && break
        sleep 0.2
    done
    [ -n "$alive" ] && kill -9 $alive 2>/dev/null || true
    echo "stopped:$pids"
}

case "$cmd" in
    up) up ;;
    down) down ;;
    *) echo "usage: SLURM_DIR=DIR bash tools/local_slurm.sh up [NODES] | down" >&2; exit 2 ;;
esac
