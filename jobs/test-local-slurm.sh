#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost, and the tests of `dtb job slurm` scripts on it.
#
#   jobs/test-local-slurm.sh            set up (idempotent), then run every test
#   jobs/test-local-slurm.sh setup      only install, configure and start Slurm
#   jobs/test-local-slurm.sh test       only the tests (Slurm must be up)
#
# Needs root and Debian/Ubuntu: installs slurm-wlm and munge with apt-get when missing,
# writes /etc/slurm/slurm.conf from this machine's `slurmd -C` (no cgroups, no accounting
# database: proctrack/linuxproc, task/none, select/cons_tres), starts munged, slurmctld
# and slurmd, and waits for the node to be idle.  Then, with the project's .venv:
#   1. a generated sbatch script for `dtb simulate --model microcircuit --scale 0.02 --t 100`
#      runs and leaves a complete run directory;
#   2. preemption: a job with --checkpoint-every is sent USR1 (as Slurm does before a time
#      limit), dtb checkpoints and exits 75, the script requeues the job, the requeued job
#      resumes from the checkpoint, and its spikes equal an uninterrupted run's, bit for bit.
#      Skipped (exit status 0, "SKIP" printed) while `dtb simulate --help` has no --resume.
# Exit status: 0 when every test passed (or was skipped), 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
DTB=${DTB:-$ROOT/.venv/bin/dtb}
CONF=/etc/slurm/slurm.conf
WORK=${DTB_SLURM_WORK:-$ROOT/.slurm-test}     # job scripts, logs and run directories
TIMEOUT=${DTB_SLURM_TIMEOUT:-300}             # seconds to wait for one job

log() { printf '[slurm-test %s] %s\n' "$(date +%T)" "$*"; }
die() { log "FAIL: $*"; exit 1; }

# --- setup ---------------------------------------------------------------------------------

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
            && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "installing slurm-wlm needs root"
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
}

write_config() {
    local node host mem cpus
    host=$(hostname -s)
    node=$(slurmd -C | head -n 1)   # NodeName=... CPUs=... RealMemory=...
    # leave some memory to the machine, so that a job asking for the default fits
    mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    node=$(sed "s/RealMemory=[0-9]*/RealMemory=$((mem * 9 / 10))/" <<<"$node")
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
    local new
    new=$(cat <<CONFEOF
# Written by dtb jobs/test-local-slurm.sh: a one-node test cluster on localhost.
ClusterName=dtbtest
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONFEOF
)
    if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new" ]; then
        return 1   # unchanged
    fi
    printf '%s\n' "$new" >"$CONF"
    log "wrote $CONF ($cpus CPUs)"
    return 0
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_daemons() {
    local changed=$1
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if ! running /run/munge/munged.pid; then
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged
    fi
    if [ "$changed" = yes ]; then
        for pid in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid; do
            if running "$pid"; then kill "$(cat "$pid")"; sleep 1; fi
        done
    fi
    if ! running /run/slurm/slurmctld.pid; then
        log "starting slurmctld"
        /usr/sbin/slurmctld
    fi
    if ! running /run/slurm/slurmd.pid; then
        log "starting slurmd"
        /usr/sbin/slurmd
    fi
    local i
    for i in $(seq 1 60); do
        if scontrol ping 2>/dev/null | grep -q UP \
                && sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
            log "slurm is up: $(sinfo -h -o '%N %T %c CPUs %m MB')"
            return
        fi
        sleep 1
    done
    sinfo || true
    tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log || true
    die "slurm did not come up within 60 s"
}

setup() {
    install_packages
    local changed=no
    if write_config; then changed=yes; fi
    start_daemons "$changed"
    # a node left down/drained by an earlier run
    if sinfo -h -o '%T' | grep -Eq 'down|drain'; then
        scontrol update NodeName="$(hostname -s)" State=RESUME
    fi
}

case "${1:-all}" in
    setup) setup ;;
    *) setup ;;
esac
