#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost, and the tests of `dtb job slurm` scripts on it.
#
#   jobs/test-local-slurm.sh            set up (idempotent), then run every test
#   jobs/test-local-slurm.sh setup      only install, configure and start Slurm
#   jobs/test-local-slurm.sh test [complete|preemption]...
#                                       only the tests (Slurm must be up)
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
WORK=${DTB_SLURM_WORK:-${TMPDIR:-/tmp}/dtb-slurm-test}   # job scripts, logs, run directories
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
    node=${node/RealMemory=$mem/RealMemory=$((mem * 9 / 10))}
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
    local _
    for _ in $(seq 1 60); do
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

# --- tests -----------------------------------------------------------------------------------

# `dtb job slurm ARGS...`
gen() { "$DTB" job slurm "$@"; }

field() { scontrol show job -o "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# wait_job JOBID: until the job has ended; a job requeued by its script waits ~2 minutes for
# its begin time in Slurm, so the test sets the begin time to now to go on sooner -- but not
# within 3 s of the requeue: slurmd compares job credentials to their revocation in whole
# seconds, and a relaunch in the second of the requeue is refused ("Job credential revoked",
# the job FAILED with exit 1).
wait_job() {
    local jid=$1 t0 state reason since=
    t0=$(date +%s)
    while :; do
        state=$(field "$jid" JobState)
        reason=$(field "$jid" Reason)
        case "$state" in
            COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)
                return ;;
            PENDING)
                if [ "$reason" = BeginTime ]; then
                    since=${since:-$(date +%s)}
                    if [ $(($(date +%s) - since)) -ge 3 ]; then
                        scontrol update JobId="$jid" StartTime=now >/dev/null 2>&1 || true
                    fi
                fi ;;
        esac
        if [ $(($(date +%s) - t0)) -gt "$TIMEOUT" ]; then
            scontrol show job "$jid" || true
            scancel "$jid" || true
            die "job $jid did not end within $TIMEOUT s (state $state)"
        fi
        sleep 1
    done
}

# check_run DIR JOBID LOG: the job completed and DIR is a complete run directory
check_run() {
    local run=$1 jid=$2 logf=$3
    [ "$(field "$jid" JobState)" = COMPLETED ] \
        || { cat "$logf" 2>/dev/null; die "job $jid: state $(field "$jid" JobState), exit $(field "$jid" ExitCode)"; }
    [ -f "$logf" ] || die "job $jid: no log $logf"
    "$PY" - "$run" <<'PYEOF' || { cat "$logf"; die "job $jid: $run is not a complete run directory"; }
import json, sys
from pathlib import Path

import h5py

run = Path(sys.argv[1])
m = json.loads((run / "manifest.json").read_text())
assert m["status"] == "complete", m["status"]
with h5py.File(run / "spikes.h5", "r") as f:
    n = sum(f["spikes"][p]["timestamps"].shape[0] for p in f["spikes"])
assert n == m["counts"]["spikes"] > 0, (n, m["counts"]["spikes"])
print(f"  {run}: complete, {m['ranks']} rank(s), {n} spikes")
PYEOF
}

same_spikes() {
    "$PY" - "$1" "$2" <<'PYEOF'
import sys

import h5py
import numpy as np

a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
assert sorted(a["spikes"]) == sorted(b["spikes"]), (list(a["spikes"]), list(b["spikes"]))
for pop in a["spikes"]:
    for ds in ("timestamps", "node_ids"):
        x, y = a["spikes"][pop][ds][()], b["spikes"][pop][ds][()]
        assert x.dtype == y.dtype and np.array_equal(x, y), f"{pop}/{ds} differ"
print("  spikes identical:", sum(a["spikes"][p]["timestamps"].shape[0] for p in a["spikes"]))
PYEOF
}

submit() { (cd "$WORK" && sbatch --parsable "$1"); }

test_complete_run() {
    log "test: a generated sbatch script runs and leaves a complete run directory (2 ranks)"
    rm -rf "$WORK/complete" "$WORK"/complete-*.out
    gen --dtb "$DTB" --model microcircuit --scale 0.02 --tasks-per-node 2 --cpus-per-task 1 \
        --mpi pmi2 \
        --time 00:10:00 --job-name complete --out complete -o "$WORK/complete.sbatch" \
        --dtb-args "--t 100"
    local jid
    jid=$(submit complete.sbatch)
    wait_job "$jid"
    check_run "$WORK/complete" "$jid" "$WORK/complete-$jid.out"
}

test_preemption() {
    if ! "$DTB" simulate --help 2>/dev/null | grep -q -- '--resume'; then
        log "SKIP preemption test: \`dtb simulate --help\` has no --resume yet (issue 8 item" \
            "1, checkpoint/restart: --checkpoint-every, exit 75 on USR1/TERM, --resume RUN)"
        return
    fi
    local t=4000 jid ref
    log "test: preemption: USR1 -> checkpoint, exit 75 -> requeue -> resume -> same spikes"
    rm -rf "$WORK/reference" "$WORK/preempted" "$WORK"/reference-*.out "$WORK"/preempted-*.out
    gen --dtb "$DTB" --model microcircuit --scale 0.02 --tasks-per-node 2 --cpus-per-task 1 \
        --mpi pmi2 \
        --time 00:10:00 --job-name reference --out reference -o "$WORK/reference.sbatch" \
        --dtb-args "--t $t"
    ref=$(submit reference.sbatch)
    wait_job "$ref"
    check_run "$WORK/reference" "$ref" "$WORK/reference-$ref.out"

    gen --dtb "$DTB" --model microcircuit --scale 0.02 --tasks-per-node 2 --cpus-per-task 1 \
        --mpi pmi2 \
        --time 00:10:00 --job-name preempted --out preempted --checkpoint-every 200 \
        -o "$WORK/preempted.sbatch" --dtb-args "--t $t"
    jid=$(submit preempted.sbatch)
    local logf="$WORK/preempted-$jid.out" t0
    t0=$(date +%s)
    until grep -q 'simulate  20%' "$logf" 2>/dev/null; do
        [ "$(field "$jid" JobState)" = COMPLETED ] && die "job $jid ended before the signal"
        [ $(($(date +%s) - t0)) -gt "$TIMEOUT" ] && die "job $jid did not reach 20%"
        sleep 0.2
    done
    log "  job $jid at 20%: scancel --signal=USR1 --batch (as Slurm does before a time limit)"
    scancel --signal=USR1 --batch "$jid"
    wait_job "$jid"
    check_run "$WORK/preempted" "$jid" "$logf"
    grep -q 'requeueing job' "$logf" || { cat "$logf"; die "job $jid was not requeued"; }
    grep -q 'resuming' "$logf" || { cat "$logf"; die "job $jid did not resume"; }
    [ "$(field "$jid" Restarts)" -ge 1 ] || die "job $jid: Restarts=$(field "$jid" Restarts)"
    same_spikes "$WORK/reference/spikes.h5" "$WORK/preempted/spikes.h5" \
        || die "spikes of the preempted and resumed run differ from the uninterrupted run"
}

# run_tests [complete|preemption]...: the named tests (default: all)
run_tests() {
    command -v sbatch >/dev/null || die "no sbatch: run '$0 setup' first"
    scontrol ping 2>/dev/null | grep -q UP || die "slurmctld is not up: run '$0 setup' first"
    [ -x "$PY" ] || die "no $PY: make the project's virtual environment first"
    mkdir -p "$WORK"
    local t0=$SECONDS name
    [ $# -gt 0 ] || set -- complete preemption
    for name in "$@"; do
        case "$name" in
            complete) test_complete_run ;;
            preemption) test_preemption ;;
            *) echo "usage: $0 test [complete|preemption]..." >&2; exit 2 ;;
        esac
    done
    log "PASS ($((SECONDS - t0)) s)"
}

case "${1:-all}" in
    setup) setup ;;
    test) shift; run_tests "$@" ;;
    all) setup; run_tests ;;
    *) echo "usage: $0 [setup | test [complete|preemption]... | all]" >&2; exit 2 ;;
esac
