#!/usr/bin/env bash
# run-guest-tests.sh [--build DIR] [--timeout SEC] [--only REGEX] [--list] [--vmm vmm|qemu]
#
# The real-guest suite: Debian's kernel and a busybox test-mode initramfs
# (make-guest-initramfs.sh --mode test) booted by build/vmm, checked through
# the guest's console markers ("VMMTEST: ...") and the VMM's exit status and
# --boot-report lines.
#
# Where it runs: if kvm-usable.sh says this machine's /dev/kvm runs Linux
# guests, the cases run directly; otherwise the script re-invokes itself
# inside the software-emulated test host (testhost.sh), one boot for all
# cases.  The artifacts (test initramfs, the PVH ELF extracted from the
# bzImage) are built first, outside, into the cache (VMM_TEST_CACHE, default
# DIR/test-cache) because the test host sees the build machine read-only.
#
# Cases (guest: 512 MiB, vmmtest.mem_mb=512, a fresh vmmtest.token):
#   kvm_tests                    DIR/kvm_tests (Catch2, direct KVM tests) if it
#                                exists: exit status 0 (skipped otherwise)
#   bzimage-1cpu, bzimage-4cpu   the bzImage, --cpus 1 / 4
#   pvh-1cpu, pvh-4cpu           the extracted vmlinux ELF (PVH entry), --cpus 1 / 4
#     pass: exit status 0, console has "VMMTEST: init started", the PASS lines
#     of port/cpus/mem/token(=ours)/interrupts, no "VMMTEST: FAIL",
#     "VMMTEST: done", and stderr has "vmm: boot: first KVM_RUN at" and the
#     boot-progress lines for 0x01 and 0x02.
#   reboot                       vmmtest.end=reboot: exit status 2, "VMMTEST: done"
#   sigterm                      vmmtest.end=hang; SIGTERM after "VMMTEST: done":
#                                exit status 143 (128 + SIGTERM)
#   bad-kernel                   --kernel of a missing file: exit status 1 and
#                                one stderr line starting "vmm: error:"
#   blk-root, blk-integrity, blk-split, blk-discard, blk-mq, blk-intx, console
#                                virtio-blk / virtio-console: the virtio block
#                                guest (make-blk-guest.sh) switch_roots into an
#                                ext4 root on /dev/vda and checks what
#                                vmmtest.blk= says; the host checks images and
#                                the console output (see the functions below
#                                and tests/guest/README.md).  SKIP if that
#                                guest could not be built (gcc, e2fsprogs).
#   serial-ports                 named virtio-serial ports (--serial-port) on two
#                                UNIX sockets beside hvc0, driven by socket clients
#                                (serial_ports_case below)
#   json-boot, example-NAME (one per examples/NAME.json), api, stop, panic,
#   timeout, console-socket
#                                JSON configs, the control API and the exit
#                                statuses 3/5/6 (tests/guest/README.md)
# Each case has a timeout (--timeout, default 240 s at TCG speed); a failing
# case prints why plus the tail of its console log and stderr.  All logs stay
# in DIR/guest-tests/ (NAME.console, NAME.stderr).
#
# Ends with the line "N passed, M failed" and exits non-zero if any failed;
# exits 77 (ctest's SKIP) when neither /dev/kvm nor the test host can be used
# (no qemu-system-x86_64).
#
# --vmm qemu (or VMM_UNDER_TEST_QEMU=1) substitutes QEMU (-M pc -accel kvm)
# for build/vmm through a small adapter that maps the VMM's options (--disk,
# --console, --serial file= included) and exit statuses (the boot-report
# checks are skipped).  It exists to check this harness and the guest side.
# Without a usable /dev/kvm it runs the cases right here with -accel tcg
# (VMM_QEMU_ACCEL=tcg), not in the test host.
set -euo pipefail
PROG=run-guest-tests.sh
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$0")/lib.sh"

# ------------------------------------------------------- QEMU adapter ----
# run-guest-tests.sh --qemu-adapter VMM-OPTIONS...: behaves like build/vmm
# (options, exit statuses) using QEMU.  Only for VMM_UNDER_TEST_QEMU=1.
qemu_adapter() {
    local kernel="" initrd="" cmdline="" cpus=1 memory=512M serial=tty console=off ndisk=0 nnet=0 spec timeout_s=0
    local disk_args=() sp_args=()
    local scsi_kind=() scsi_path=() scsi_lun=() scsi_ro=()

    while [[ $# -gt 0 ]]; do
        case $1 in
            --kernel) kernel=$2; shift 2 ;;
            --initramfs) initrd=$2; shift 2 ;;
            --cmdline) cmdline=$2; shift 2 ;;
            --cpus) cpus=$2; shift 2 ;;
            --memory) memory=$2; shift 2 ;;
            --serial) serial=$2; shift 2 ;;
            --console) console=$2; shift 2 ;;
            --disk)
                # path=FILE[,readonly=on][,serial=ID][,num_queues=N][,direct=on]
                local path="" drive="" dev="" kv
                IFS=, read -r -a spec <<<"$2"
                for kv in "${spec[@]}"; do
                    case $kv in
                        path=*) path=${kv#path=} ;;
                        readonly=on) drive+=",readonly=on" ;;
                        direct=on) drive+=",cache=none,aio=native" ;;
                        serial=*) dev+=",serial=${kv#serial=}" ;;
                        num_queues=*) dev+=",num-queues=${kv#num_queues=}" ;;
                        packed=off) dev+=",packed=off" ;;
                        *) echo "vmm: error: bad --disk item '$kv' (QEMU adapter)" >&2; exit 1 ;;
                    esac
                done
                disk_args+=(-drive "if=none,id=d$ndisk,file=$path,format=raw,discard=unmap$drive"
                    -device "virtio-blk-pci,drive=d$ndisk$dev")
                ndisk=$((ndisk + 1))
                shift 2
                ;;
            --scsi-disk|--cdrom)
                # path=FILE[,lun=N][,readonly=on]; --cdrom also takes a bare FILE
                local spath="" slun=-1 sro=off kv
                if [[ $1 == --cdrom && $2 != path=* ]]; then spath=$2; else
                    IFS=, read -r -a spec <<<"$2"
                    for kv in "${spec[@]}"; do
                        case $kv in
                            path=*) spath=${kv#path=} ;;
                            lun=*) slun=${kv#lun=} ;;
                            readonly=on) sro=on ;;
                            *) echo "vmm: error: bad $1 item '$kv' (QEMU adapter)" >&2; exit 1 ;;
                        esac
                    done
                fi
                scsi_kind+=("${1#--}") scsi_path+=("$spath") scsi_lun+=("$slun") scsi_ro+=("$sro")
                shift 2
                ;;
            --boot-report) shift ;;
            --rng) disk_args+=(-device virtio-rng-pci); shift ;;
            --net)
                # tap=NAME[,mac=MAC][,num_queues=N][,packed=on|off]: QEMU's userspace virtio-net (no
                # vhost) on the same tap
                local ntap="" nmac="" nq=1 npacked=""
                IFS=, read -r -a spec <<<"$2"
                for kv in "${spec[@]}"; do
                    case $kv in
                        tap=*) ntap=${kv#tap=} ;;
                        mac=*) nmac=${kv#mac=} ;;
                        num_queues=*) nq=${kv#num_queues=} ;;
                        packed=on | packed=off) npacked=",packed=${kv#packed=}" ;;
                        *) echo "vmm: error: bad --net item '$kv' (QEMU adapter)" >&2; exit 1 ;;
                    esac
                done
                local nq_args="" ndev_args=""
                [[ $nq -gt 1 ]] && nq_args=",queues=$nq" ndev_args=",mq=on,vectors=$((2 * nq + 2))"
                disk_args+=(-netdev "tap,id=n$nnet,ifname=$ntap,script=no,downscript=no,vhost=off$nq_args"
                    -device "virtio-net-pci,netdev=n$nnet${nmac:+,mac=$nmac}$ndev_args$npacked")
                nnet=$((nnet + 1))
                shift 2
                ;;
            --balloon)
                # size=SIZE[,deflate_on_oom=on][,free_page_reporting=on][,stats_interval=S]; QEMU
                # has no initial size (it would need its monitor), so only size=0 maps
                local bdev=virtio-balloon-pci
                IFS=, read -r -a spec <<<"$2"
                for kv in "${spec[@]}"; do
                    case $kv in
                        size=0) ;;
                        deflate_on_oom=on) bdev+=",deflate-on-oom=on" ;;
                        free_page_reporting=on) bdev+=",free-page-reporting=on" ;;
                        stats_interval=*) ;;
                        *) echo "vmm: error: bad --balloon item '$kv' (QEMU adapter)" >&2; exit 1 ;;
                    esac
                done
                disk_args+=(-device "$bdev")
                shift 2
                ;;
            --serial-port)
                # name=NAME,socket=PATH|file=PATH: a virtserialport on the console's virtio-serial-pci
                local sp_name="" sp_chr="" kv
                IFS=, read -r -a spec <<<"$2"
                for kv in "${spec[@]}"; do
                    case $kv in
                        name=*) sp_name=${kv#name=} ;;
                        socket=*) sp_chr="socket,path=${kv#socket=},server=on,wait=off" ;;
                        file=*) sp_chr="file,path=${kv#file=}" ;;
                        *) echo "vmm: error: bad --serial-port item '$kv' (QEMU adapter)" >&2; exit 1 ;;
                    esac
                done
                sp_args+=(-chardev "$sp_chr,id=sp${#sp_args[@]}" -device "virtserialport,chardev=sp${#sp_args[@]},name=$sp_name")
                shift 2
                ;;
            --timeout) timeout_s=$2; shift 2 ;;
            --log-file) shift 2 ;;
            *) echo "vmm: error: unknown option $1 (QEMU adapter)" >&2; exit 1 ;;
        esac
    done
    [[ -r $kernel ]] || { echo "vmm: error: cannot open kernel $kernel (QEMU adapter)" >&2; exit 1; }
    if [[ ${#scsi_path[@]} -gt 0 ]]; then
        # the VMM's LUN rule: disks, then CD-ROMs; no lun= takes the lowest free one
        local -A taken=()
        local i kind next=0 order=()
        for i in "${!scsi_lun[@]}"; do [[ ${scsi_lun[$i]} -ge 0 ]] && taken[${scsi_lun[$i]}]=1; done
        for kind in scsi-disk cdrom; do
            for i in "${!scsi_kind[@]}"; do [[ ${scsi_kind[$i]} == "$kind" ]] && order+=("$i"); done
        done
        disk_args+=(-device virtio-scsi-pci,id=scsi0)
        for i in "${order[@]}"; do
            if [[ ${scsi_lun[$i]} -lt 0 ]]; then
                while [[ -n ${taken[$next]:-} ]]; do next=$((next + 1)); done
                scsi_lun[$i]=$next
                taken[$next]=1
            fi
            if [[ ${scsi_kind[$i]} == cdrom ]]; then
                disk_args+=(-drive "if=none,id=s$i,file=${scsi_path[$i]},format=raw,readonly=on,media=cdrom"
                    -device "scsi-cd,bus=scsi0.0,drive=s$i,scsi-id=0,lun=${scsi_lun[$i]}")
            else
                disk_args+=(-drive "if=none,id=s$i,file=${scsi_path[$i]},format=raw,discard=unmap,readonly=${scsi_ro[$i]}"
                    -device "scsi-hd,bus=scsi0.0,drive=s$i,scsi-id=0,lun=${scsi_lun[$i]}")
            fi
        done
    fi
    local log=/dev/null relay=0 serial_arg qin=/dev/null
    case $serial in
        tty) log=$(mktemp "${TMPDIR:-/tmp}/qemu-adapter.XXXXXX"); serial_arg="file:$log"; relay=1 ;;
        file=*) serial_arg="file:${serial#file=}"; log=${serial#file=} ;;
        socket=*) serial_arg="unix:${serial#socket=},server=on,wait=off" ;;
        off) serial_arg=null ;;
        *) echo "vmm: error: bad --serial $serial (QEMU adapter)" >&2; exit 1 ;;
    esac
    local con_args=()
    # shellcheck disable=SC2054 # QEMU's commas
    case $console in
        off) ;;
        tty) con_args=(-chardev stdio,id=hvc,signal=off); qin=/dev/stdin ;;
        file=*) con_args=(-chardev "file,id=hvc,path=${console#file=}") ;;
        *) echo "vmm: error: bad --console $console (QEMU adapter)" >&2; exit 1 ;;
    esac
    # shellcheck disable=SC2054 # QEMU's commas
    [[ $console != off ]] && con_args+=(-device virtconsole,chardev=hvc)
    # one virtio-serial-pci carries hvc0 and the named ports
    [[ $console != off || ${#sp_args[@]} -gt 0 ]] && con_args=(-device virtio-serial-pci "${con_args[@]}" "${sp_args[@]}")
    # VMM_QEMU_ACCEL=tcg runs the guests without /dev/kvm (run-guest-tests.sh --vmm qemu)
    local accel=(-accel kvm -cpu host)
    [[ ${VMM_QEMU_ACCEL:-kvm} == tcg ]] && accel=(-accel tcg -cpu max)
    # pvpanic (ISA, port 0x505, ACPI QEMU0001 like the VMM's): a guest panic
    # makes QEMU exit with status 1, mapped to 3 below
    local args=(qemu-system-x86_64 -M pc "${accel[@]}" -smp "$cpus" -m "$memory"
        -nodefaults -no-user-config -display none -nic none -no-reboot
        -device pvpanic -action panic=exit-failure
        -serial "$serial_arg" -monitor none -kernel "$kernel" -append "$cmdline"
        "${disk_args[@]}" "${con_args[@]}")
    [[ -n $initrd ]] && args+=(-initrd "$initrd")
    "${args[@]}" <"$qin" &
    local qpid=$! sig="" timed_out=0
    trap 'sig=15; kill -TERM $qpid 2>/dev/null' TERM
    trap 'sig=2; kill -TERM $qpid 2>/dev/null' INT
    trap 'timed_out=1; kill -TERM $qpid 2>/dev/null' USR1
    # --timeout: a watcher signals us (the wait below is interruptible)
    local wpid=""
    if [[ $timeout_s != 0 ]]; then
        (sleep "$timeout_s" && kill -USR1 $$) </dev/null >/dev/null 2>&1 &
        wpid=$!
    fi
    # relay the console file to our stdout as it grows
    local tpid=""
    if [[ $relay == 1 ]]; then
        tail -n +1 -f --pid="$qpid" "$log" &
        tpid=$!
    fi
    local st=0
    while :; do
        wait "$qpid" && st=0 || st=$?
        kill -0 "$qpid" 2>/dev/null || break # else wait was interrupted by a trap
    done
    [[ -n $tpid ]] && { wait "$tpid" 2>/dev/null || true; }
    [[ -n $wpid ]] && { kill "$wpid" 2>/dev/null || true; }
    if [[ -n $sig ]]; then [[ $relay == 1 ]] && rm -f "$log"; exit $((128 + sig)); fi
    if [[ $timed_out == 1 ]]; then [[ $relay == 1 ]] && rm -f "$log"; exit 5; fi
    local rc=0
    if [[ $st -ne 0 ]] && [[ -f $log ]] && grep -q 'Kernel panic - not syncing' "$log"; then
        rc=3 # -action panic=exit-failure
    elif [[ $st -ne 0 ]]; then
        rc=1
    elif grep -q 'reboot: Restarting system' "$log"; then
        rc=2 # -no-reboot turns a guest reboot into a plain exit
    fi
    [[ $relay == 1 ]] && rm -f "$log"
    exit "$rc"
}
if [[ ${1:-} == --qemu-adapter ]]; then
    shift
    qemu_adapter "$@"
fi

# ------------------------------------------------------------ options ----
usage() {
    sed -n '2p' "$0" | sed 's/^# /usage: /' >&2
    exit 1
}
build="$REPO_ROOT/build" case_timeout=240 only="" inner=0 logdir="" list=0 vmm_choice=vmm
while [[ $# -gt 0 ]]; do
    case $1 in
        --build) [[ $# -ge 2 ]] || usage; build=$2; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || usage; case_timeout=$2; shift 2 ;;
        --only) [[ $# -ge 2 ]] || usage; only=$2; shift 2 ;;
        --list) list=1; shift ;;
        --vmm) [[ $# -ge 2 ]] || usage; vmm_choice=$2; shift 2 ;;
        --inner) inner=1; shift ;;              # internal: run the cases here
        --logdir) logdir=$2; shift 2 ;;         # internal
        -h|--help) usage ;;
        *) usage ;;
    esac
done
mkdir -p "$build"
build=$(cd "$build" && pwd)
export VMM_TEST_CACHE=${VMM_TEST_CACHE:-$build/test-cache}

case $vmm_choice in
    vmm) ;;
    qemu) export VMM_UNDER_TEST_QEMU=1 ;;
    *) die "--vmm takes vmm or qemu, not '$vmm_choice'" ;;
esac

# One case per example config, so that a wedged test host (see
# run_in_testhost) costs one boot, not all of them.
example_cases=()
for f in "$REPO_ROOT"/examples/*.json; do
    [[ -f $f ]] && example_cases+=("example-$(basename "$f" .json)")
done
all_cases=(kvm_tests bzimage-1cpu bzimage-4cpu pvh-1cpu pvh-4cpu reboot sigterm bad-kernel
    blk-root blk-integrity blk-split blk-discard blk-mq blk-intx console rng balloon balloon-report net net-mq
    scsi scsi-256
    json-boot "${example_cases[@]}" api stop panic timeout hugepages console-socket serial-ports)
selected=()
for c in "${all_cases[@]}"; do
    [[ -z $only || $c =~ $only ]] && selected+=("$c")
done
if [[ $list == 1 ]]; then
    printf '%s\n' "${selected[@]}"
    exit 0
fi
[[ ${#selected[@]} -gt 0 ]] || die "--only '$only' selects no case (see --list)"

# inner_args DIR [REGEX]: sets INNER_ARGS to the arguments that make this
# script run the cases (those REGEX selects) here, logging to DIR: the one
# place that passes the outer run's options on to the inner one.
inner_args() {
    INNER_ARGS=(--inner --build "$build" --timeout "$case_timeout" --logdir "$1")
    if [[ -n ${2:-} ]]; then INNER_ARGS+=(--only "$2"); fi
}

# run_shard DIR CASES...: runs CASES inside test hosts that use DIR as their
# scratch directory, and writes one "PASS|FAIL|SKIP|LOST NAME" line per case
# to DIR/.outcome and the cases a wedge interrupted to DIR/.wedges.
#
# The test host (QEMU TCG, nested SVM) sometimes wedges: its one emulated CPU
# stops taking interrupts, typically while a multi-vCPU guest of the VMM spins
# in a wait loop (seen: Linux's stop_machine at SMP bring-up), with the test
# host's own timer interrupt left pending in its local APIC for good.  Nothing
# inside can recover from that, not even the per-case timeouts.  So the
# inner run writes a heartbeat and the name of the current case to the
# scratch directory; when the heartbeat is older than VMM_GUEST_WEDGE_SECONDS
# (default 40) the test host is killed, and a new one runs the cases not yet
# done, the interrupted one first.  A case interrupted in all of its
# VMM_GUEST_CASE_ATTEMPTS (default 5) fails.  Every restart is printed and
# listed before the summary line.  On this project's build machines (QEMU
# 7.2) between one guest boot in three and one in ten wedges the test host,
# with this VMM and with the foundation issue's alike (tests/guest/README.md).
run_shard() {
    local dir=$1
    shift
    local wedge_s=${VMM_GUEST_WEDGE_SECONDS:-40} attempts=${VMM_GUEST_CASE_ATTEMPTS:-5}
    local now left st pid cur verdict name c
    local -a todo=("$@") next
    local -A outcome=() interrupted=()
    mkdir -p "$dir"
    : >"$dir/.outcome"
    : >"$dir/.wedges"
    while [[ ${#todo[@]} -gt 0 ]]; do
        now=$(date +%s)
        left=$((deadline_s - (now - suite_t0_s)))
        if [[ $left -lt 60 ]]; then
            echo "$PROG: error: out of time (VMM_GUEST_TESTS_MAX_SECONDS=$deadline_s) with cases left: ${todo[*]}" >&2
            break
        fi
        rm -f "$dir/.results" "$dir/.current" "$dir/.heartbeat" "$dir/summary"
        inner_args "$dir" "^($(IFS='|'; echo "${todo[*]}"))\$"
        VMM_GUEST_ROUND=1 "$GUEST_DIR/testhost.sh" --timeout "$left" --scratch "$dir" -- "$SELF" "${INNER_ARGS[@]}" &
        pid=$!
        # Watch the heartbeat (it starts once the test host runs the suite).
        if ! watch_testhost "$pid" "$dir" "$wedge_s" "$dir/.heartbeat"; then
            cur=$(cat "$dir/.current" 2>/dev/null || echo '?')
            echo "$PROG: warning: the test host wedged during '$cur' (no heartbeat for $WEDGE_AGE s); killed it" >&2
            : >"$dir/.wedged"
        fi
        st=0
        wait "$pid" || st=$?
        # what this round finished
        if [[ -f $dir/.results ]]; then
            while read -r verdict name; do outcome[$name]=$verdict; done <"$dir/.results"
        fi
        next=()
        for c in "${todo[@]}"; do [[ -n ${outcome[$c]:-} ]] || next+=("$c"); done
        todo=("${next[@]}")
        [[ ${#todo[@]} -gt 0 ]] || break
        cur=$(cat "$dir/.current" 2>/dev/null || true)
        if [[ ! -e $dir/.wedged ]]; then
            # not a wedge: the test host failed to boot or died
            echo "$PROG: error: the test host ended (status $st) with cases left: ${todo[*]}; logs in $dir" >&2
            break
        fi
        rm -f "$dir/.wedged"
        echo "${cur:-?}" >>"$dir/.wedges"
        if [[ -n $cur && ${todo[0]} == "$cur" ]]; then
            interrupted[$cur]=$((${interrupted[$cur]:-0} + 1))
            if [[ ${interrupted[$cur]} -ge $attempts ]]; then
                echo "FAIL $cur (the test host wedged during all $attempts attempts)"
                outcome[$cur]=FAIL
                todo=("${todo[@]:1}")
            else
                echo "$PROG: note: rerunning '$cur' (attempt $((${interrupted[$cur]} + 1)) of $attempts) and the cases after it in a new test host" >&2
            fi
        fi
    done
    rm -f "$dir/.results" "$dir/.current" "$dir/.heartbeat"
    for c in "$@"; do echo "${outcome[$c]:-LOST} $c" >>"$dir/.outcome"; done
}

# Rough cost of each case in seconds inside the test host (the official CI's
# times), for splitting the suite between test hosts; the others count 40.
declare -A case_cost=([kvm_tests]=12 [bzimage-1cpu]=30 [bzimage-4cpu]=45 [pvh-1cpu]=21 [pvh-4cpu]=30
    [reboot]=26 [sigterm]=68 [bad-kernel]=1 [blk-root]=46 [blk-integrity]=49 [blk-split]=50 [blk-discard]=62
    [blk-mq]=102 [blk-intx]=45 [console]=135 [rng]=49 [balloon]=195 [balloon-report]=143 [net]=350
    [net-mq]=200 [scsi]=35 [scsi-256]=120 [serial-ports]=50)

# run_in_testhost: runs the selected cases in VMM_GUEST_SHARDS test hosts at
# once (default: 2 when this machine has 2 or more CPUs: the test host
# emulates its one CPU on one host thread, so a second test host uses the
# second core), each with its own share of the cases (split by case_cost,
# suite order kept within a share), scratch directory and wedge detector;
# then prints the suite's summary and returns 0 if every case passed or
# skipped.  Each share's output lines start with [N]; every case's logs end
# up in $logdir.
run_in_testhost() {
    local shards=${VMM_GUEST_SHARDS:-}
    if [[ -z $shards ]]; then
        shards=1
        [[ $(nproc) -ge 2 ]] && shards=2
    fi
    [[ $shards =~ ^[1-9]$ ]] || die "VMM_GUEST_SHARDS must be 1 to 9, not '$shards'"
    [[ $shards -le ${#selected[@]} ]] || shards=${#selected[@]}
    deadline_s=${VMM_GUEST_TESTS_MAX_SECONDS:-3600}
    suite_t0_s=$(date +%s)
    local -a load=() share=() dirs=() pids=() mine=()
    local c i best cost
    for ((i = 0; i < shards; i++)); do load[i]=0; share[i]=""; done
    # the most expensive first, each onto the least loaded share
    while read -r cost c; do
        best=0
        for ((i = 1; i < shards; i++)); do [[ ${load[i]} -lt ${load[best]} ]] && best=$i; done
        load[best]=$((${load[best]} + cost))
        share[best]+=" $c"
    done < <(for c in "${selected[@]}"; do echo "${case_cost[$c]:-40} $c"; done | sort -s -k1,1nr)
    if [[ $shards -eq 1 ]]; then
        dirs=("$logdir")
        run_shard "$logdir" "${selected[@]}"
    else
        for ((i = 0; i < shards; i++)); do
            mine=()
            for c in "${selected[@]}"; do [[ " ${share[i]} " == *" $c "* ]] && mine+=("$c"); done
            dirs+=("$logdir/share$((i + 1))")
            note "test host $((i + 1)) of $shards: ${mine[*]} (about ${load[i]} s)"
            # sed -u: whole lines, so the shares' output does not interleave mid-line
            (run_shard "$logdir/share$((i + 1))" "${mine[@]}" 2>&1 | sed -u "s/^/[$((i + 1))] /") &
            pids+=($!)
        done
        for i in "${pids[@]}"; do wait "$i" || true; done
        # the case logs, side by side as with one test host
        for i in "${dirs[@]}"; do
            find "$i" -maxdepth 1 -type f ! -name '.*' ! -name summary ! -name exit-status \
                -exec mv -f -t "$logdir" {} + 2>/dev/null || true
        done
    fi
    local -A outcome=()
    local verdict name d wedged_in=() lost=() failures=() passed=0 failed=0
    for d in "${dirs[@]}"; do
        [[ -f $d/.outcome ]] && while read -r verdict name; do outcome[$name]=$verdict; done <"$d/.outcome"
        [[ -f $d/.wedges ]] && while read -r name; do wedged_in+=("$name"); done <"$d/.wedges"
    done
    for c in "${selected[@]}"; do
        case ${outcome[$c]:-LOST} in
            PASS) passed=$((passed + 1)) ;;
            SKIP) ;;
            LOST) lost+=("$c"); failed=$((failed + 1)); failures+=("$c") ;;
            *) failed=$((failed + 1)); failures+=("$c") ;;
        esac
    done
    echo "== the test hosts took $(($(date +%s) - suite_t0_s)) s"
    [[ ${#lost[@]} -eq 0 ]] || echo "not run: ${lost[*]}"
    [[ ${#wedged_in[@]} -eq 0 ]] || echo "test host restarts after a wedge: ${#wedged_in[@]} (during: ${wedged_in[*]})"
    [[ $failed -eq 0 ]] || echo "failed: ${failures[*]}"
    echo "$passed passed, $failed failed" | tee "$logdir/summary"
    [[ $failed -eq 0 ]]
}

# ------------------------------------------------------------- outer ----
if [[ $inner == 0 ]]; then
    # Build the guest artifacts here, where the cache is writable.
    kernel=$(guest_kernel)
    initrd=$(guest_test_initramfs)
    vmlinux=$(guest_pvh_vmlinux)
    note "guest kernel $kernel, PVH ELF $vmlinux, initramfs $initrd"
    # The virtio block guest (gcc, mke2fs); its cases SKIP if this fails.
    if [[ " ${selected[*]} " == *" blk-"* || " ${selected[*]} " == *" console "* || " ${selected[*]} " == *" rng "* ||
        " ${selected[*]} " == *" balloon"* || " ${selected[*]} " == *" net"* || " ${selected[*]} " == *" scsi"* ||
        " ${selected[*]} " == *" serial-ports "* ]]; then
        if blk_root=$(guest_blk_rootfs) && blk_initrd=$(guest_blk_initramfs); then
            note "virtio block guest: initramfs $blk_initrd, root image $blk_root"
        else
            note "warning: the virtio block guest could not be built; the blk-*/console/rng cases will SKIP"
        fi
    fi
    logdir=$build/guest-tests
    rm -rf "$logdir"
    mkdir -p "$logdir"
    inner_args "$logdir" "$only"

    if verdict=$("$GUEST_DIR/kvm-usable.sh"); then
        note "$verdict -> running the cases directly"
        exec "$SELF" "${INNER_ARGS[@]}"
    fi
    if [[ -n ${VMM_UNDER_TEST_QEMU:-} && ${VMM_UNDER_TEST_QEMU} != 0 ]]; then
        # QEMU needs no /dev/kvm: run its guests here under TCG, no test host.
        note "$verdict -> QEMU stands in for the VMM: running the cases here under TCG"
        export VMM_QEMU_ACCEL=tcg
        exec "$SELF" "${INNER_ARGS[@]}"
    fi
    if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
        # ctest treats 77 as SKIP (tests/CMakeLists.txt)
        echo "$PROG: SKIP: $verdict, and qemu-system-x86_64 (package qemu-system-x86) is missing for the test host"
        exit 77
    fi
    note "$verdict -> running the cases inside the test host (QEMU TCG + nested SVM)"
    run_in_testhost
    exit $?
fi

# ------------------------------------------------------------- inner ----
[[ -n $logdir ]] || die "--inner needs --logdir"
mkdir -p "$logdir"
kernel=$(guest_kernel)
initrd=$(guest_test_initramfs)
vmlinux=$(guest_pvh_vmlinux)
if [[ -n ${VMM_UNDER_TEST_QEMU:-} && ${VMM_UNDER_TEST_QEMU} != 0 ]]; then
    vmm=("$SELF" --qemu-adapter)
    qemu_mode=1
    note "VMM_UNDER_TEST_QEMU: QEMU stands in for build/vmm (boot-report checks skipped)"
else
    vmm=("$build/vmm")
    qemu_mode=0
fi
echo "== real-guest tests on $(uname -n) ($(uname -r)), $(nproc) CPU(s), /dev/kvm: $([[ -c /dev/kvm ]] && echo present || echo MISSING)"
echo "== VMM: ${vmm[*]}; kernel $(basename "$kernel"); case timeout ${case_timeout} s"

passed=0 failed=0 skipped=0
failures=()
# Live console/stderr logs go to a local tmpfs and are copied to $logdir after
# each case: in the test host $logdir is a 9p mount, and a VMM writing its
# console there byte by byte would stall its emulated UART (and the guest).
live=$(mktemp -d "${TMPDIR:-/tmp}/guest-tests.XXXXXX")
trap 'rm -rf "$live"' EXIT

# new_token: a short random string for vmmtest.token
new_token() {
    local t
    t=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    echo "t$t"
}

# Outcomes also go, one "PASS|FAIL|SKIP NAME" line each, to $logdir/.results:
# the outer run reads it to resume after a wedged test host (see there).
record() { echo "$1 $2" >>"$logdir/.results"; }

# skip NAME WHY: count and print a case that cannot run here
skip() {
    skipped=$((skipped + 1))
    echo "SKIP $1 ($2)"
    record SKIP "$1"
}

# report NAME SECONDS REASONS...: count and print the outcome of a case
report() {
    local name=$1 secs=$2
    shift 2
    # keep the logs (the live copies are on a local tmpfs, see below)
    cp "$live/$name".* "$logdir/" 2>/dev/null || true
    if [[ $# -eq 0 ]]; then
        passed=$((passed + 1))
        echo "PASS $name (${secs} s)"
        record PASS "$name"
        return
    fi
    failed=$((failed + 1))
    record FAIL "$name"
    failures+=("$name")
    echo "FAIL $name (${secs} s)"
    local r
    for r in "$@"; do echo "  - $r"; done
    if [[ -s $logdir/$name.console ]]; then
        echo "  --- tail of $name.console"
        tr -d '\r' <"$live/$name.console" | grep -v 'VMMTEST: info' | tail -n 25 | sed 's/^/  | /'
    fi
    if [[ -s $logdir/$name.stderr ]]; then
        echo "  --- tail of $name.stderr"
        tail -n 15 "$live/$name.stderr" | sed 's/^/  | /'
    fi
}

elapsed_s() { # START_MS -> "12.3"
    local t=$(($(now_ms) - $1))
    echo "$((t / 1000)).$((t % 1000 / 100))"
}

# console_has NAME REGEX: grep the console log without CRs
console_has() {
    # no grep -q: with pipefail, tr's SIGPIPE would turn a match into a miss
    tr -d '\r' <"$live/$1.console" | grep -E -- "$2" >/dev/null
}

# guest_case NAME KERNEL CPUS END EXPECTED_STATUS
guest_case() {
    local name=$1 k=$2 cpus=$3 end=$4 expect=$5
    local token mem=512 t0 st=0 reasons=()
    token=$(new_token)
    local cmdline="console=ttyS0 panic=-1 vmmtest.cpus=$cpus vmmtest.mem_mb=$mem vmmtest.end=$end vmmtest.token=$token"
    if [[ ! -x ${vmm[0]} ]]; then
        : >"$live/$name.console"
        echo "${vmm[0]} not found" >"$live/$name.stderr"
        report "$name" 0 "${vmm[0]} does not exist or is not executable"
        return
    fi
    t0=$(now_ms)
    timeout -k 10 "$case_timeout" "${vmm[@]}" --kernel "$k" --initramfs "$initrd" \
        --cmdline "$cmdline" --cpus "$cpus" --memory "${mem}M" --boot-report \
        </dev/null >"$live/$name.console" 2>"$live/$name.stderr" || st=$?
    local secs
    secs=$(elapsed_s "$t0")
    if [[ $st -eq 124 || $st -eq 137 ]]; then
        reasons+=("timed out after ${case_timeout} s")
    elif [[ $st -ne $expect ]]; then
        reasons+=("exit status $st, expected $expect")
    fi
    console_has "$name" '^VMMTEST: init started' || reasons+=("no 'VMMTEST: init started' on the console")
    console_has "$name" '^VMMTEST: done' || reasons+=("no 'VMMTEST: done' on the console")
    if console_has "$name" 'VMMTEST: FAIL'; then
        reasons+=("guest checks failed: $(tr -d '\r' <"$live/$name.console" | grep 'VMMTEST: FAIL' | tr '\n' ';')")
    fi
    local check
    for check in port "cpus $cpus" mem "token $token" interrupts; do
        console_has "$name" "^VMMTEST: PASS $check( |\$)" || reasons+=("no 'VMMTEST: PASS $check' on the console")
    done
    if [[ $qemu_mode == 0 ]]; then
        grep -q -E '^vmm: boot: first KVM_RUN at [0-9.]+ ms' "$live/$name.stderr" ||
            reasons+=("no 'vmm: boot: first KVM_RUN at <ms> ms' on stderr")
        grep -q -E '^vmm: boot: progress 0x0*1 at [0-9.]+ ms' "$live/$name.stderr" ||
            reasons+=("no 'vmm: boot: progress 0x1' (init started) on stderr")
        grep -q -E '^vmm: boot: progress 0x0*2 at [0-9.]+ ms' "$live/$name.stderr" ||
            reasons+=("no 'vmm: boot: progress 0x2' (checks done) on stderr")
    fi
    report "$name" "$secs" "${reasons[@]}"
}

# sigterm_case KERNEL: a guest that stays up after its checks gets SIGTERM;
# the VMM must exit within 30 s with status 143 (128 + SIGTERM).
sigterm_case() {
    local name=sigterm k=$1 t0 st=0 reasons=() pid state=timeout deadline i
    if [[ ! -x ${vmm[0]} ]]; then
        report "$name" 0 "${vmm[0]} does not exist or is not executable"
        return
    fi
    t0=$(now_ms)
    deadline=$((t0 + case_timeout * 1000))
    : >"$live/$name.console" # polled below before the VMM may have opened it
    "${vmm[@]}" --kernel "$k" --initramfs "$initrd" --cpus 1 --memory 512M \
        --cmdline "console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.mem_mb=512 vmmtest.end=hang" \
        </dev/null >"$live/$name.console" 2>"$live/$name.stderr" &
    pid=$!
    while :; do
        if console_has "$name" '^VMMTEST: done'; then state=ready; break; fi
        if ! kill -0 "$pid" 2>/dev/null; then state=exited; break; fi
        [[ $(now_ms) -lt $deadline ]] || break
        sleep 0.5
    done
    case $state in
        ready)
            sleep 1 # let init reach its sleep
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 60; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            if kill -0 "$pid" 2>/dev/null; then
                reasons+=("still running 30 s after SIGTERM")
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" && st=0 || st=$?
            [[ $st -eq 143 ]] || reasons+=("exit status $st after SIGTERM, expected 143")
            ;;
        exited)
            wait "$pid" && st=0 || st=$?
            reasons+=("the VMM exited (status $st) before the guest was up")
            ;;
        timeout)
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            reasons+=("no 'VMMTEST: done' within ${case_timeout} s")
            ;;
    esac
    report "$name" "$(elapsed_s "$t0")" "${reasons[@]}"
}

bad_kernel_case() {
    local name=bad-kernel t0 st=0 reasons=()
    if [[ ! -x ${vmm[0]} ]]; then
        report "$name" 0 "${vmm[0]} does not exist or is not executable"
        return
    fi
    t0=$(now_ms)
    timeout -k 5 60 "${vmm[@]}" --kernel "$logdir/no-such-kernel" --cpus 1 --memory 64M \
        </dev/null >"$live/$name.console" 2>"$live/$name.stderr" || st=$?
    [[ $st -eq 1 ]] || reasons+=("exit status $st, expected 1")
    grep -q '^vmm: error:' "$live/$name.stderr" || reasons+=("no 'vmm: error:' line on stderr")
    report "$name" "$(elapsed_s "$t0")" "${reasons[@]}"
}

kvm_tests_case() {
    local name=kvm_tests t0 st=0 reasons=()
    if [[ ! -x $build/kvm_tests ]]; then
        skip "$name" "$build/kvm_tests not built"
        return
    fi
    t0=$(now_ms)
    timeout -k 10 "$case_timeout" "$build/kvm_tests" </dev/null >"$live/$name.console" 2>"$live/$name.stderr" || st=$?
    if [[ $st -eq 124 || $st -eq 137 ]]; then
        reasons+=("timed out after ${case_timeout} s")
    elif [[ $st -ne 0 ]]; then
        reasons+=("exit status $st")
    fi
    report "$name" "$(elapsed_s "$t0")" "${reasons[@]}"
}

# ------------------------------------------------ virtio block / console ----
# The blk-* and console cases boot the module-carrying initramfs
# (make-blk-guest.sh --initramfs), which switch_roots into a private copy of
# the ext4 root image on /dev/vda; the root's /sbin/vmmtest-blk runs the
# checks vmmtest.blk= names.  Disk images live in $live/img (a tmpfs in the
# test host, which also supports hole punching for blk-discard).
blk_root="" blk_initrd="" blkbench=""
blk_prereq() { # sets BLK_WHY: "" if the blk cases can run, else why not
    BLK_WHY=""
    if [[ ! -x ${vmm[0]} ]]; then
        BLK_WHY="${vmm[0]} does not exist or is not executable"
        return
    fi
    if [[ -z $blk_root ]]; then
        # built by the outer run (the cache is read-only in the test host)
        blk_root=$(guest_blk_rootfs 2>/dev/null) || blk_root=""
        blk_initrd=$(guest_blk_initramfs 2>/dev/null) || blk_initrd=""
        blkbench=$(guest_blkbench 2>/dev/null) || blkbench=""
    fi
    if [[ -z $blk_root || -z $blk_initrd || -z $blkbench ]]; then
        BLK_WHY="the virtio block guest was not built (needs gcc, libc6-dev, e2fsprogs; see the outer run's warnings)"
    fi
}
blk_skip() { # NAME WHY: a missing VMM fails (as in the other cases), a missing guest skips
    if [[ ! -x ${vmm[0]} ]]; then
        report "$1" 0 "$2"
        return
    fi
    skip "$1" "$2"
}

# blk_boot NAME CPUS CMDLINE-EXTRA [VMM-OPTIONS...]: boots the blk guest with
# the root image copy $live/img/NAME-root.img as the first --disk, serial
# console to $live/NAME.console; sets BLK_ST (exit status) and BLK_SECS.
blk_boot() {
    local name=$1 cpus=$2 extra=$3 t0
    shift 3
    BLK_ST=0
    t0=$(now_ms)
    timeout -k 10 "$case_timeout" "${vmm[@]}" --kernel "$kernel" --initramfs "$blk_initrd" \
        --cmdline "console=ttyS0 panic=-1 vmmtest.cpus=$cpus $extra" --cpus "$cpus" --memory 512M \
        --serial "file=$live/$name.console" --disk "path=$live/img/$name-root.img${BLK_ROOT_OPTS:-}" "$@" \
        </dev/null >"$live/$name.stdout" 2>"$live/$name.stderr" || BLK_ST=$?
    BLK_SECS=$(elapsed_s "$t0")
}

# blk_common NAME CHECKS...: the reasons common to every blk case (appended
# to the array REASONS): exit status 0, both stages ran, "VMMTEST: done", no
# FAIL, a PASS line for each of CHECKS.
blk_common() {
    local name=$1 c
    shift
    : >>"$live/$name.console"
    if [[ $BLK_ST -eq 124 || $BLK_ST -eq 137 ]]; then
        REASONS+=("timed out after ${case_timeout} s")
    elif [[ $BLK_ST -ne 0 ]]; then
        REASONS+=("exit status $BLK_ST, expected 0")
    fi
    console_has "$name" '^VMMTEST: init started' || REASONS+=("no 'VMMTEST: init started' on the serial console")
    console_has "$name" '^VMMTEST: stage2 started' ||
        REASONS+=("no 'VMMTEST: stage2 started': the initramfs did not switch_root into /dev/vda")
    console_has "$name" '^VMMTEST: done' || REASONS+=("no 'VMMTEST: done' on the serial console")
    if console_has "$name" 'VMMTEST: FAIL'; then
        REASONS+=("guest checks failed: $(tr -d '\r' <"$live/$name.console" | grep 'VMMTEST: FAIL' | tr '\n' ';')")
    fi
    for c in "$@"; do
        console_has "$name" "^VMMTEST: PASS $c( |\$)" || REASONS+=("no 'VMMTEST: PASS $c' on the console")
    done
}

# blk_prepare NAME: fresh image dir and root copy (sparse)
blk_prepare() {
    rm -rf "$live/img"
    mkdir -p "$live/img"
    cp --sparse=always "$blk_root" "$live/img/$1-root.img"
}

blk_root_case() {
    local name=blk-root token
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    blk_prepare "$name"
    token=$(new_token)
    REASONS=()
    : >"$live/$name.hvc"
    blk_boot "$name" 1 "console=hvc0 vmmtest.blk=root vmmtest.token=$token" --console "file=$live/$name.hvc"
    blk_common "$name" rootfs rootfs-content rootfs-rw irq
    # the guest's reports must also have come over virtio-console (hvc0)
    local c
    for c in 'VMMTEST: PASS rootfs ' 'VMMTEST: PASS rootfs-rw' 'VMMTEST: PASS irq' 'VMMTEST: done'; do
        tr -d '\r' <"$live/$name.hvc" | grep -F -- "$c" >/dev/null || REASONS+=("no '$c' in the --console file (hvc0)")
    done
    # and the guest's write must be in the image (debugfs reads ext4 without mounting)
    if command -v debugfs >/dev/null; then
        local got
        got=$(debugfs -R "cat /var/rw-test" "$live/img/$name-root.img" 2>/dev/null || true)
        [[ $got == "written $token" ]] || REASONS+=("/var/rw-test in the root image holds '$got', not 'written $token'")
    fi
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

# blk-integrity; blk-split is the same with packed=off on every disk (the
# driver then uses the split ring, which Linux otherwise never picks here)
# and checks the VMM's "driver ready" log lines name the ring layout.
blk_integrity_case() {
    local name=${1:-blk-integrity} seed_w seed_r count=128 out ring=packed
    local opt="" BLK_ROOT_OPTS="" log_opt=()
    [[ $qemu_mode == 1 ]] || log_opt=(--log-level info)
    if [[ $name == blk-split ]]; then
        ring=split opt=,packed=off BLK_ROOT_OPTS=,packed=off
    fi
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    blk_prepare "$name"
    seed_w=$((RANDOM * 32768 + RANDOM + 1))
    seed_r=$((RANDOM * 32768 + RANDOM + 1))
    truncate -s 64M "$live/img/vdb.img"
    truncate -s 64M "$live/img/vdc.img"
    "$blkbench" pattern-write "$live/img/vdc.img" "$seed_r" "$count" >"$live/$name.host" 2>&1 ||
        { report "$name" 0 "host-side pattern-write to vdc.img failed: $(cat "$live/$name.host")"; return; }
    REASONS=()
    blk_boot "$name" 1 "vmmtest.blk=integrity vmmtest.seed_w=$seed_w vmmtest.seed_r=$seed_r vmmtest.count=$count" \
        --disk "path=$live/img/vdb.img,serial=vmmtest-rw$opt" --disk "path=$live/img/vdc.img,readonly=on,serial=vmmtest-ro$opt" \
        "${log_opt[@]}"
    blk_common "$name" pattern-write vdc-ro pattern-verify vdc-write-refused
    if [[ $qemu_mode == 0 ]]; then
        local n
        n=$(grep -c -E "virtio-blk[0-9]+: driver ready: .* $ring ring" "$live/$name.stderr" || true)
        [[ $n -ge 3 ]] || REASONS+=("stderr has $n 'virtio-blkN: driver ready: ... $ring ring' lines, expected 3 (vda, vdb, vdc)")
    fi
    # byte for byte: the guest's slots hold the pattern, everything else is zero
    out=$("$blkbench" pattern-verify "$live/img/vdb.img" "$seed_w" "$count" 2>&1) ||
        REASONS+=("host check of vdb.img (guest-written pattern): $out")
    out=$("$blkbench" pattern-verify "$live/img/vdc.img" "$seed_r" "$count" 2>&1) ||
        REASONS+=("the read-only vdc.img changed: $out")
    echo "$out" >>"$live/$name.host"
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

# help_mentions TEXT: true if the VMM's --help mentions TEXT. The help is
# read whole first: with pipefail, `--help | grep -q` fails whenever grep
# exits at its first match before the VMM has written all of a help text
# longer than one write (the VMM then dies of SIGPIPE).
help_mentions() {
    local help
    help=$("${vmm[@]}" --help 2>&1) || true
    [[ $help == *"$1"* ]]
}

# rng: --rng; the guest's hw_random uses virtio_rng.N and /dev/hwrng gives
# random bytes.
rng_case() {
    local name=rng
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    if [[ $qemu_mode == 0 ]] && ! help_mentions '--rng'; then
        report "$name" 0 "${vmm[0]} --help does not mention --rng"
        return
    fi
    blk_prepare "$name"
    REASONS=()
    blk_boot "$name" 1 "vmmtest.blk=rng" --rng
    blk_common "$name" rng-current rng-read rng-random
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

# balloon_start NAME CMDLINE-EXTRA BALLOON-SPEC: the blk guest in the
# background with a control socket and --balloon; 1 if it cannot run here
# (then the case is already reported).
balloon_start() {
    local name=$1 extra=$2 spec=$3
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return 1; }
    issue5_prereq "$name" --balloon || return 1
    [[ -n $python ]] || { skip "$name" "python3 is needed to read the control API's counters"; return 1; }
    blk_prepare "$name"
    rm -f "$live/$name.sock"
    CTL_NAME=$name CTL_SOCK=$live/$name.sock
    : >"$live/$name.ctl"
    bg_start "$name" --kernel "$kernel" --initramfs "$blk_initrd" --cpus 1 --memory 256M \
        --cmdline "console=ttyS0 panic=-1 vmmtest.cpus=1 $extra" --disk "path=$live/img/$name-root.img" \
        --api-socket "$CTL_SOCK" --balloon "$spec"
}

# counter_checks JSON DEVICE EXPR...: each EXPR is "KEY OP N" (OP: -eq,
# -ge, ...) on DEVICE's counters; failures go to REASONS
# num_test A OP B: test(1)'s integer comparison (OP -eq -ne -lt -le -gt -ge)
# on two decimal numbers, without handing test(1) an operator from a variable.
num_test() {
    case $2 in
        -eq) (($1 == $3)) ;;
        -ne) (($1 != $3)) ;;
        -lt) (($1 < $3)) ;;
        -le) (($1 <= $3)) ;;
        -gt) (($1 > $3)) ;;
        -ge) (($1 >= $3)) ;;
        *) return 2 ;;
    esac
}

counter_checks() {
    local out=$1 dev=$2 e key op n v
    shift 2
    for e in "$@"; do
        read -r key op n <<<"$e"
        v=$(counter_value "$out" "$dev" "$key")
        if [[ ! $v =~ ^[0-9]+$ || ! $n =~ ^[0-9]+$ ]] || ! num_test "$v" "$op" "$n"; then
            REASONS+=("counters: $dev $key is $v, expected $op $n")
        fi
    done
}

# balloon: the guest (256 MiB) touches most of its memory and frees it; the
# host inflates the balloon by 128 MiB through the API and the VMM's RSS must
# fall by at least 3/4 of that; then it deflates, and the guest's MemTotal comes
# back and the memory is usable again. The stats queue reports the guest's
# memory figures, refreshed after the inflation (total below 256 - 128 + 16 MiB).
balloon_case() {
    local name=balloon mib=128 touched="" rss1=0 rss2=0 drop
    REASONS=()
    balloon_start "$name" "vmmtest.blk=balloon vmmtest.balloon_mib=$mib" size=0,stats_interval=1 || return 0
    if bg_wait_console "$name" '^VMMTEST: balloon touched' $((case_timeout - 60)); then
        touched=$(tr -d '\r' <"$live/$name.console" | sed -n 's/^VMMTEST: balloon touched //p' | head -n 1)
        rss1=$(rss_mib "$BG_PID")
        if ctl_ok inflate balloon "${mib}M" && bg_wait_console "$name" '^VMMTEST: balloon inflated' 150; then
            sleep 1
            rss2=$(rss_mib "$BG_PID")
            drop=$((rss1 - rss2))
            [[ $drop -ge $((mib * 3 / 4)) ]] ||
                REASONS+=("the VMM's RSS fell by $drop MiB ($rss1 -> $rss2) for a $mib MiB balloon, expected >= $((mib * 3 / 4)) MiB")
            if ctl_ok counters counters; then
                counter_checks "$CTL_OUT" virtio-balloon0 "actual_bytes -eq $((mib << 20))" "target_bytes -eq $((mib << 20))" \
                    "inflated_pages -ge $((mib * 256))" "discarded_bytes -ge $((mib * 3 / 4 << 20))" "bad_pfns -eq 0" \
                    "errors -eq 0" "stats_updates -ge 2" "guest_free_memory -gt 0" \
                    "guest_total_memory -lt $((256 - mib + 16 << 20))"
            fi
            ctl_ok deflate balloon 0 || true
        else
            REASONS+=("the guest never said 'balloon inflated'")
        fi
    else
        REASONS+=("the guest never said 'balloon touched'")
    fi
    bg_wait_exit "$case_timeout" || true
    BLK_ST=$BG_ST
    [[ $BG_ST == running ]] && BLK_ST=124
    blk_common "$name" balloon-bound balloon-inflate balloon-deflate balloon-reuse
    echo "  $name: guest touched ${touched:-?} MiB; VMM RSS $rss1 MiB before, $rss2 MiB with the $mib MiB balloon"
    report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
}

# balloon-report: free page reporting. The guest fills most of its memory,
# then frees it; with no balloon target the VMM's RSS must fall by at least
# half of what was filled within 30 s, and reported_bytes must account for it.
balloon_report_case() {
    local name=balloon-report filled="" rss1=0 rss=0 i
    REASONS=()
    balloon_start "$name" "vmmtest.blk=balloon-report vmmtest.hold_s=120" size=0,free_page_reporting=on || return 0
    if bg_wait_console "$name" '^VMMTEST: report filled' $((case_timeout - 60)); then
        filled=$(tr -d '\r' <"$live/$name.console" | sed -n 's/^VMMTEST: report filled //p' | head -n 1)
        rss1=$(rss_mib "$BG_PID")
        bg_wait_console "$name" '^VMMTEST: report freed' 30 || REASONS+=("the guest never said 'report freed'")
        for ((i = 0; i < 60; i++)); do
            rss=$(rss_mib "$BG_PID")
            [[ $((rss1 - rss)) -lt $((filled / 2)) ]] || break
            sleep 0.5
        done
        [[ $((rss1 - rss)) -ge $((filled / 2)) ]] ||
            REASONS+=("the VMM's RSS went from $rss1 to $rss MiB when the guest freed $filled MiB, expected a drop >= $((filled / 2)) MiB")
        if ctl_ok counters counters; then
            counter_checks "$CTL_OUT" virtio-balloon0 "reported_bytes -ge $((filled / 2 << 20))" \
                "discarded_bytes -ge $((filled / 2 << 20))" "actual_bytes -eq 0" "errors -eq 0"
        fi
        ctl_ok stop stop || true
    else
        REASONS+=("the guest never said 'report filled'")
    fi
    bg_wait_exit 60 || true
    [[ $BG_ST == 6 ]] || REASONS+=("exit status $BG_ST, expected 6 (stopped through the API)")
    console_has "$name" '^VMMTEST: PASS balloon-bound' || REASONS+=("no 'VMMTEST: PASS balloon-bound' on the console")
    console_has "$name" 'VMMTEST: FAIL' &&
        REASONS+=("guest checks failed: $(tr -d '\r' <"$live/$name.console" | grep 'VMMTEST: FAIL' | tr '\n' ';')")
    echo "  $name: guest filled ${filled:-?} MiB; VMM RSS $rss1 MiB then, $rss MiB after it freed it (reporting)"
    report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
}

# net_case NAME CPUS QUEUES MIB: virtio-net on a tap the VMM creates inside
# the test host (its own machine: no route anywhere else), link-local
# addresses; ping, then MIB MiB each way over TCP checked by SHA-256. With
# QUEUES > 1 the tap is multi-queue and the guest must see that many queues.
# OPTS (and VMM_NET_OPTS, from net-bench --also) are appended to the --net spec.
net_case() { # NAME CPUS QUEUES MIB [OPTS]
    local name=$1 cpus=$2 queues=$3 mib=$4 opts=${5:-}${VMM_NET_OPTS:+,$VMM_NET_OPTS} tap=vmmtap0 i tx_host="" rx_host="" sha size rest spid
    local bytes=$((mib << 20))
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    if [[ $qemu_mode == 0 ]] && ! help_mentions '--net'; then
        report "$name" 0 "${vmm[0]} --help does not mention --net"
        return
    fi
    if [[ ! -c /dev/net/tun || $(id -u) != 0 || -z $python ]] || ! command -v ip >/dev/null; then
        skip "$name" "needs root, /dev/net/tun, ip and python3 (it runs inside the test host; on a KVM host run the suite as root)"
        return
    fi
    if [[ -z ${VMM_GUEST_ROUND:-} && ${VMM_NET_TEST_ON_HOST:-0} != 1 ]]; then
        skip "$name" "not inside the test host: it would create tap $tap on this machine (set VMM_NET_TEST_ON_HOST=1 to allow)"
        return
    fi
    blk_prepare "$name"
    REASONS=()
    CTL_NAME=$name CTL_SOCK=$live/$name.sock
    rm -f "$CTL_SOCK"
    : >"$live/$name.ctl"
    local qopt="" qarg="" api=(--api-socket "$CTL_SOCK")
    [[ $queues -gt 1 ]] && qopt=",num_queues=$queues" qarg="vmmtest.queues=$queues"
    [[ $qemu_mode == 1 ]] && api=()
    bg_start "$name" --kernel "$kernel" --initramfs "$blk_initrd" --cpus "$cpus" --memory 512M \
        --cmdline "console=ttyS0 panic=-1 vmmtest.cpus=$cpus vmmtest.blk=net vmmtest.net_mib=$mib $qarg" \
        --disk "path=$live/img/$name-root.img" "${api[@]}" --net "tap=$tap$qopt${opts:+,${opts#,}}"
    for ((i = 0; i < 100; i++)); do
        [[ -e /sys/class/net/$tap ]] && break
        kill -0 "$BG_PID" 2>/dev/null || break
        sleep 0.2
    done
    if [[ -e /sys/class/net/$tap ]] && ip addr add 169.254.77.1/24 dev "$tap" && ip link set "$tap" up; then
        "$python" "$sockclient" tcp-sink 169.254.77.1 5001 "$bytes" "$live/$name.tx" 900 \
            >>"$live/$name.host" 2>&1 &
        spid=$!
        # Nested TCG moves about 0.5 MB/s: 64 MiB takes minutes each way.
        if bg_wait_console "$name" '^VMMTEST: net listening' 900; then
            # The guest's send returned with its last bytes still in its
            # socket buffer: tx_bytes is complete once the host has them all.
            wait "$spid" || REASONS+=("receiving $mib MiB from the guest failed: $(tail -n 2 "$live/$name.host")")
            spid=""
            # Counters now: the guest powers off soon after it has received.
            if [[ $qemu_mode == 0 ]] && ctl_ok counters counters; then
                counter_checks "$CTL_OUT" virtio-net0 "rx_packets -gt 0" "tx_packets -gt 0" "errors -eq 0" \
                    "tx_bytes -ge $bytes"
                # The driver has programmed its receive filter (promiscuous
                # off): frames to a MAC that is not the guest's are dropped
                # by the VMM and counted.
                local filtered now="" t
                filtered=$(counter_value "$CTL_OUT" virtio-net0 rx_filtered)
                if [[ $filtered =~ ^[0-9]+$ ]] &&
                    "$python" "$sockclient" eth-send "$tap" 02:00:00:00:00:01 5 >>"$live/$name.host" 2>&1; then
                    for ((t = 0; t < 20; t++)); do
                        ctl counters
                        now=$(counter_value "$CTL_OUT" virtio-net0 rx_filtered)
                        [[ $now =~ ^[0-9]+$ ]] && ((now >= filtered + 5)) && break
                        sleep 0.5
                    done
                    [[ $now =~ ^[0-9]+$ ]] && ((now >= filtered + 5)) ||
                        REASONS+=("receive filter: rx_filtered went from $filtered to $now after 5 frames to another MAC")
                else
                    REASONS+=("could not check the receive filter (rx_filtered: $filtered)")
                fi
            fi
            if "$python" "$sockclient" tcp-source 169.254.77.2 5002 "$bytes" "$live/$name.rx" 60 >>"$live/$name.host" 2>&1; then
                # The guest has read everything and is hashing it: the VMM
                # usually still answers (if it has powered off already, the
                # checksum below still decides the case).
                if [[ $qemu_mode == 0 ]] && ctl counters && [[ $CTL_ST == 0 ]]; then
                    counter_checks "$CTL_OUT" virtio-net0 "rx_bytes -ge $bytes" "errors -eq 0"
                fi
            else
                REASONS+=("sending $mib MiB to the guest failed: $(tail -n 2 "$live/$name.host")")
            fi
        else
            REASONS+=("the guest never said 'net listening'")
        fi
        if [[ -n $spid ]]; then
            wait "$spid" || REASONS+=("receiving $mib MiB from the guest failed: $(tail -n 2 "$live/$name.host")")
        fi
        bg_wait_console "$name" '^VMMTEST: net rx-sha' 900 || REASONS+=("the guest never reported what it received")
    else
        REASONS+=("tap $tap did not appear, or could not be configured")
    fi
    bg_wait_exit 120 || true
    BLK_ST=$BG_ST
    [[ $BG_ST == running ]] && BLK_ST=124
    if [[ -s $live/$name.tx ]]; then
        read -r sha size tx_host <<<"$(cat "$live/$name.tx")"
        console_has "$name" "^VMMTEST: net tx-sha $sha\$" ||
            REASONS+=("guest -> host: the host got $size bytes with SHA-256 $sha, not what the guest sent")
    else
        REASONS+=("guest -> host: nothing received")
    fi
    if [[ -s $live/$name.rx ]]; then
        read -r sha size rx_host <<<"$(cat "$live/$name.rx")"
        console_has "$name" "^VMMTEST: net rx-sha $sha $size\$" ||
            REASONS+=("host -> guest: the guest did not report SHA-256 $sha for $size bytes")
    fi
    local checks=(net-device net-ping net-tx)
    [[ $queues -gt 1 ]] && checks+=(net-mq)
    blk_common "$name" "${checks[@]}"
    echo "  $name: $mib MiB guest->host in ${tx_host:-?} s, host->guest in ${rx_host:-?} s"
    report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
}

# scsi: one virtio-scsi controller: disks on LUNs 0 and 1 (the guest writes
# patterns, checked here byte for byte), 2 (read-only, holds our pattern),
# 5 (lun=5; the guest discards, the image must shrink) and a CD-ROM (auto:
# LUN 3) with an ISO 9660 file system built here.
scsi_case() {
    local name=scsi seed_w seed_r count=128 token out mib=16 before after n log_opt=()
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    if [[ $qemu_mode == 0 ]] && ! help_mentions '--scsi-disk'; then
        report "$name" 0 "${vmm[0]} --help does not mention --scsi-disk"
        return
    fi
    command -v xorriso >/dev/null || { skip "$name" "xorriso is missing (tests/install-deps.sh)"; return; }
    [[ $qemu_mode == 1 ]] || log_opt=(--log-level info)
    blk_prepare "$name"
    local img=$live/img
    seed_w=$((RANDOM * 32768 + RANDOM + 1))
    seed_r=$((RANDOM * 32768 + RANDOM + 1))
    truncate -s 64M "$img/s0.img" "$img/s1.img" "$img/s2.img" "$img/s5.img"
    { "$blkbench" pattern-write "$img/s2.img" "$seed_r" "$count" && "$blkbench" fill "$img/s5.img" 32; } \
        >"$live/$name.host" 2>&1 || { report "$name" 0 "host-side image setup failed: $(cat "$live/$name.host")"; return; }
    token=$(new_token)
    mkdir -p "$img/iso"
    echo "$token" >"$img/iso/vmmtest.txt"
    xorriso -as mkisofs -quiet -V VMMTEST -o "$img/cd.iso" "$img/iso" >>"$live/$name.host" 2>&1 ||
        { report "$name" 0 "xorriso failed: $(cat "$live/$name.host")"; return; }
    before=$(stat -c %b "$img/s5.img")
    REASONS=()
    blk_boot "$name" 1 "vmmtest.blk=scsi vmmtest.scsi_luns=5 vmmtest.seed_w=$seed_w vmmtest.seed_r=$seed_r vmmtest.count=$count vmmtest.token=$token vmmtest.discard_mib=$mib" \
        --scsi-disk "path=$img/s0.img" --scsi-disk "path=$img/s1.img" --scsi-disk "path=$img/s2.img,readonly=on" \
        --scsi-disk "path=$img/s5.img,lun=5" --cdrom "$img/cd.iso" "${log_opt[@]}"
    blk_common "$name" scsi-luns scsi-types scsi-write-0 scsi-write-1 scsi-ro scsi-verify scsi-write-refused \
        scsi-discard scsi-cdrom
    out=$("$blkbench" pattern-verify "$img/s0.img" "$seed_w" "$count" 2>&1) ||
        REASONS+=("host check of s0.img (LUN 0, guest-written pattern): $out")
    echo "s0: $out" >>"$live/$name.host"
    out=$("$blkbench" pattern-verify "$img/s1.img" $((seed_w + 1)) "$count" 2>&1) ||
        REASONS+=("host check of s1.img (LUN 1, guest-written pattern): $out")
    out=$("$blkbench" pattern-verify "$img/s2.img" "$seed_r" "$count" 2>&1) ||
        REASONS+=("the read-only s2.img changed: $out")
    after=$(stat -c %b "$img/s5.img")
    echo "s5 allocated 512-byte blocks: before $before, after $after" >>"$live/$name.host"
    [[ $((before - after)) -ge $((mib * 1024)) ]] ||
        REASONS+=("s5.img allocation went from $before to $after blocks after discarding $mib MiB")
    if [[ $qemu_mode == 0 ]]; then
        # unsupported commands Linux probes with, and the forced write, got CHECK CONDITION
        n=$(grep -o -E 'virtio-scsi0: [0-9]+ requests.* ([0-9]+) check conditions' "$live/$name.stderr" | tail -n 1 |
            sed -E 's/.* ([0-9]+) check conditions/\1/')
        [[ ${n:-0} -gt 0 ]] || REASONS+=("no 'virtio-scsi0: ... N check conditions' line with N > 0 in stderr")
    fi
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

# scsi-256: 256 small sparse disks on one controller (LUNs 0..255 of target
# 0); the guest must see 256 sd disks.
scsi_many_case() {
    local count=$1 name=scsi-$1 i args=()
    # probing 256 sd disks takes ~2-3 min at TCG speed (190 s measured with a
    # second test host running): give the guest more than the default 240 s
    local case_timeout=$((case_timeout > 480 ? case_timeout : 480))
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    blk_prepare "$name"
    for ((i = 0; i < count; i++)); do
        truncate -s 1M "$live/img/m$i.img"
        args+=(--scsi-disk "path=$live/img/m$i.img")
    done
    REASONS=()
    blk_boot "$name" 1 "vmmtest.blk=scsi-many vmmtest.scsi_luns=$count" "${args[@]}"
    blk_common "$name" scsi-many scsi-many-read
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

blk_discard_case() {
    local name=blk-discard before after mib=16 min_drop
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    blk_prepare "$name"
    truncate -s 64M "$live/img/vdb.img"
    "$blkbench" fill "$live/img/vdb.img" 32 >"$live/$name.host" 2>&1 ||
        { report "$name" 0 "host-side fill of vdb.img failed: $(cat "$live/$name.host")"; return; }
    before=$(stat -c %b "$live/img/vdb.img")
    REASONS=()
    blk_boot "$name" 1 "vmmtest.blk=discard vmmtest.discard_mib=$mib" --disk "path=$live/img/vdb.img"
    blk_common "$name" discard-advertised blkdiscard
    after=$(stat -c %b "$live/img/vdb.img")
    # stat's %b counts 512-byte blocks; at least half the discarded range must be freed
    min_drop=$((mib * 1024))
    echo "allocated 512-byte blocks: before $before, after $after (discarded $mib MiB = $((mib * 2048)))" >>"$live/$name.host"
    [[ $((before - after)) -ge $min_drop ]] ||
        REASONS+=("vdb.img allocation went from $before to $after blocks; expected a drop of >= $min_drop after discarding $mib MiB")
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

blk_mq_case() {
    local name=blk-mq
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    blk_prepare "$name"
    truncate -s 64M "$live/img/vdb.img"
    REASONS=()
    # 4 vCPUs, 4 queues on both disks (BLK_ROOT_OPTS: the root disk's options)
    BLK_ROOT_OPTS=,num_queues=4 blk_boot "$name" 4 "vmmtest.blk=mq vmmtest.queues=4" \
        --disk "path=$live/img/vdb.img,num_queues=4"
    blk_common "$name" mq-vda mq-vdb mq-io irq
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

blk_intx_case() {
    local name=blk-intx token
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    blk_prepare "$name"
    token=$(new_token)
    REASONS=()
    blk_boot "$name" 1 "pci=nomsi vmmtest.blk=intx vmmtest.irq=intx vmmtest.token=$token"
    blk_common "$name" rootfs rootfs-rw irq read-vda
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

# console: --console tty with stdin from a FIFO: the guest's line on hvc0 must
# reach our stdout, and a line we send after it must reach the guest.
# counters_check NAME SOCKET: the control API's counters of a running blk +
# console guest show traffic on the right queues (appends to REASONS).
# counter_value JSON DEVICE KEY: one value of `vmm ctl counters` output, or "missing"
counter_value() {
    "$python" -c 'import json,sys
d={x["device"]:x["values"] for x in json.load(sys.stdin)["devices"]}
print(d[sys.argv[1]][sys.argv[2]])' "$2" "$3" <<<"$1" 2>/dev/null || echo missing
}

# rss_mib PID: resident memory of a process in MiB (0 if it is gone)
rss_mib() {
    awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$1/status" 2>/dev/null || echo 0
}

counters_check() {
    local out key
    CTL_NAME=$1 CTL_SOCK=$2 ctl_ok counters counters || return 0 # logged to NAME.ctl
    out=$CTL_OUT
    [[ -n $python ]] || return 0
    # virtio-blk0's request queue and virtio-console0's transmit queue (1)
    # carried chains, all returned, with interrupts; nothing malformed.
    for key in virtio-blk0:q0.chains virtio-blk0:q0.used virtio-blk0:q0.interrupts virtio-blk0:q0.notifications \
        virtio-console0:q1.chains virtio-console0:q1.used; do
        local v
        v=$(counter_value "$out" "${key%%:*}" "${key#*:}")
        [[ $v =~ ^[1-9][0-9]*$ ]] || REASONS+=("counters: $key is $v, expected > 0")
    done
    grep -q -E '"q[0-9]+\.errors": *[1-9]' <<<"$out" && REASONS+=("counters: a queue reports errors: $out")
    return 0
}

console_case() {
    local name=console token input pid t0 i st=0
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    blk_prepare "$name"
    token=$(new_token)
    input="hello-$(new_token)"
    REASONS=()
    rm -f "$live/fifo"
    mkfifo "$live/fifo"
    : >"$live/$name.hvc"
    # The per-queue counters of the control API, read while the guest runs
    # (not with the QEMU adapter, which has no control API).
    local -a api_opt=()
    [[ $qemu_mode == 1 ]] || api_opt=(--api-socket "$live/$name.sock")
    t0=$(now_ms)
    timeout -k 10 "$case_timeout" "${vmm[@]}" --kernel "$kernel" --initramfs "$blk_initrd" \
        --cmdline "console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.blk=console vmmtest.token=$token vmmtest.hvc_in=$input" \
        --cpus 1 --memory 512M --serial "file=$live/$name.console" --disk "path=$live/img/$name-root.img" \
        --console tty "${api_opt[@]}" <"$live/fifo" >"$live/$name.hvc" 2>"$live/$name.stderr" &
    pid=$!
    exec 3>"$live/fifo" # unblocks the VMM's open; held until it exits
    for ((i = 0; i < case_timeout * 5; i++)); do
        tr -d '\r' <"$live/$name.hvc" | grep -F "VMMTEST: hvc0 $token" >/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if tr -d '\r' <"$live/$name.hvc" | grep -F "VMMTEST: hvc0 $token" >/dev/null; then
        [[ $qemu_mode == 1 ]] || counters_check "$name" "$live/$name.sock"
        sleep 1 # the guest opens hvc0 for reading right after; input before that is buffered anyway
        printf '%s\n' "$input" >&3
    else
        REASONS+=("'VMMTEST: hvc0 $token' never arrived on the VMM's stdout (virtio-console output)")
    fi
    wait "$pid" && st=0 || st=$?
    exec 3>&-
    rm -f "$live/fifo"
    BLK_ST=$st
    BLK_SECS=$(elapsed_s "$t0")
    blk_common "$name" hvc0-present hvc0-input
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

# ------------------------------------------ issue 5: config, API, exits ----
# json-boot, example-*, api, panic, timeout, stop, console-socket.  The VMM
# runs in the background (bg_*), the host side talks to it with `vmm ctl`
# and, for raw socket traffic, a small python3 client (sockclient.py below;
# python3 is Debian's, used only when present: what needs it SKIPs without).
python=""
for c in /usr/bin/python3 python3; do
    if command -v "$c" >/dev/null 2>&1; then python=$(command -v "$c"); break; fi
done
sockclient=$live/sockclient.py
cat >"$sockclient" <<'PY'
"""Tiny UNIX-socket and JSON helper for run-guest-tests.sh (stdlib only).

request SOCKET LINE             send LINE + newline, print the first response line
read SOCKET REGEX SECONDS WAIT  connect (retrying for WAIT s), copy what arrives to
                                stdout until REGEX matches (exit 0), EOF or SECONDS (exit 1)
serial SOCKET REGEX REPLY END SECONDS WAIT
                                read until REGEX, send REPLY, then close (END=close) or
                                wait for EOF (END=eof; exit 2 without)
error-code                      stdin is one response line: print error.code if it is
                                {"ok": false, "error": {"code": ..., "message": ...}}, else exit 1
key KEY                         stdin is JSON: print the first value of KEY found (depth first)
tcp-sink ADDR PORT BYTES OUT S  accept one TCP connection on ADDR:PORT (for S s), read
                                BYTES, write "SHA256 BYTES SECONDS" to OUT, close
tcp-source ADDR PORT BYTES OUT S  connect to ADDR:PORT (retrying for S s), send BYTES
                                random bytes, shut down the sending side and wait for
                                the peer to close, write "SHA256 BYTES SECONDS" to OUT
eth-send IFACE DSTMAC COUNT     send COUNT small Ethernet frames (ethertype 0x88b5,
                                local experimental) to DSTMAC out of IFACE (AF_PACKET)
SECONDS covers only the transfer: from the first byte until the last byte was
read (sink) or until the peer had read everything and closed (source). The
data is made and hashed outside that window, since the test host's one CPU is
the one the guest runs on.
example FILE                    an effective config (--print-config): lines cpus=, mem_mb=,
                                console=, api=, log=, and disk=PATH<TAB>--disk options
                                after path (one line per disk)
"""
import json, re, socket, sys, time

def connect(path, wait):
    end = time.monotonic() + wait
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError as e:
            s.close()
            if time.monotonic() >= end:
                sys.exit("cannot connect to %s: %s" % (path, e))
            time.sleep(0.1)

def find(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            r = find(v, key)
            if r is not None:
                return r
    return None

def tcp_report(c, who):
    """One line of the host kernel's TCP_INFO for a finished transfer: what
    limited the sender (busy = sending, rwnd = the peer's window, sndbuf =
    its buffer), the smoothed RTT, the congestion window."""
    import struct
    try:
        ti = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 192)
    except OSError:
        return
    if len(ti) < 192:
        return
    # struct tcp_info (linux/tcp.h): 8 bytes, 24 u32 from tcpi_rto, ...
    u32 = struct.unpack_from("24I", ti, 8)
    rtt, cwnd, retrans = u32[15], u32[18], u32[23]
    segs_out, segs_in = struct.unpack_from("2I", ti, 136)
    busy, rwnd, sndbuf = struct.unpack_from("3Q", ti, 168)
    print("%s: tcp rtt=%dus cwnd=%d retrans=%d segs_out=%d segs_in=%d busy=%dus rwnd_limited=%dus "
          "sndbuf_limited=%dus" % (who, rtt, cwnd, retrans, segs_out, segs_in, busy, rwnd, sndbuf))

def mib(v):
    if isinstance(v, int):
        return v >> 20
    m = re.fullmatch(r"(\d+)\s*([KMGT]?)(i?B)?", str(v).strip(), re.I)
    if not m:
        return 0
    shift = {"": 20, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]
    return (int(m.group(1)) << shift) >> 20

mode = sys.argv[1]
if mode in ("tcp-sink", "tcp-source"):
    import hashlib, os
    addr, port, want, out, wait = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
    h = hashlib.sha256()
    done = 0
    if mode == "tcp-sink":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((addr, port))
        ls.listen(1)
        ls.settimeout(wait)
        c, _ = ls.accept()
        c.settimeout(120)
        # One buffer, filled in place: no new 1 MiB object per recv() on
        # the test host's one CPU, which the guest shares.
        buf = bytearray(want)
        view = memoryview(buf)
        t0 = time.monotonic()
        while done < want:
            n = c.recv_into(view[done:done + (1 << 20)])
            if not n:
                break
            done += n
        secs = time.monotonic() - t0
        h.update(view[:done])
    else:
        data = os.urandom(want)
        h.update(data)
        end = time.monotonic() + wait
        while True:
            try:
                c = socket.create_connection((addr, port), timeout=5)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.5)
        c.settimeout(120)
        view = memoryview(data)
        t0 = time.monotonic()
        while done < want:
            n = min(1 << 20, want - done)
            c.sendall(view[done:done + n])
            done += n
        # sendall() returns once the data is in the host's socket buffer
        # (megabytes); the transfer ends when the peer has read it all.
        c.shutdown(socket.SHUT_WR)
        while c.recv(4096):
            pass
        secs = time.monotonic() - t0
    tcp_report(c, mode)
    c.close()
    with open(out, "w") as f:
        f.write("%s %d %.2f\n" % (h.hexdigest(), done, secs))
    sys.exit(0 if done == want else 1)
if mode == "eth-send":
    iface, dst, count = sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", "")), int(sys.argv[4])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    src = s.getsockname()[4][:6]
    for i in range(count):
        s.send(dst + src + b"\x88\xb5" + bytes([i & 0xff]) * 46)
    sys.exit(0)
if mode == "request":
    s = connect(sys.argv[2], 5)
    s.settimeout(10)
    s.sendall(sys.argv[3].encode() + b"\n")
    buf = b""
    while b"\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    print(buf.decode(errors="replace").split("\n")[0])
elif mode == "read":
    s = connect(sys.argv[2], float(sys.argv[5]))
    pat = re.compile(sys.argv[3].encode(), re.M)
    end = time.monotonic() + float(sys.argv[4])
    buf = b""
    while time.monotonic() < end:
        s.settimeout(max(0.1, end - time.monotonic()))
        try:
            d = s.recv(4096)
        except socket.timeout:
            break
        if not d:
            break
        buf += d
        sys.stdout.buffer.write(d)
        sys.stdout.flush()
        if pat.search(buf.replace(b"\r", b"")):
            sys.exit(0)
    sys.exit(1)
elif mode == "serial":
    # serial SOCKET REGEX REPLY END SECONDS WAIT: connect (retrying WAIT s), copy
    # what arrives to stdout until REGEX matches (else exit 1), send REPLY and a
    # newline; END=close: close, exit 0; END=eof: read on until EOF, print
    # "<EOF>", exit 0 (exit 2 if none within SECONDS)
    s = connect(sys.argv[2], float(sys.argv[7]))
    pat = re.compile(sys.argv[3].encode(), re.M)
    end = time.monotonic() + float(sys.argv[6])
    def recv():
        s.settimeout(max(0.1, end - time.monotonic()))
        try:
            return s.recv(4096)
        except socket.timeout:
            return None
    buf = b""
    while not pat.search(buf.replace(b"\r", b"")):
        d = recv()
        if not d:
            print("<no match: %s>" % ("timeout" if d is None else "EOF"))
            sys.exit(1)
        buf += d
        sys.stdout.buffer.write(d)
        sys.stdout.flush()
    s.sendall(sys.argv[4].encode() + b"\n")
    print("<sent %s>" % sys.argv[4], flush=True)
    if sys.argv[5] == "close":
        s.close()
        sys.exit(0)
    while True:
        d = recv()
        if d is None:
            print("<no EOF>")
            sys.exit(2)
        if not d:
            print("<EOF>")
            sys.exit(0)
        sys.stdout.buffer.write(d)
elif mode == "error-code":
    r = json.loads(sys.stdin.readline())
    e = r.get("error") if isinstance(r, dict) else None
    if r.get("ok") is False and isinstance(e, dict) and e.get("code") and "message" in e:
        print(e["code"])
    else:
        sys.exit(1)
elif mode == "key":
    v = find(json.load(sys.stdin), sys.argv[2])
    if v is None:
        sys.exit(1)
    print(v if isinstance(v, str) else json.dumps(v))
elif mode == "example":
    c = json.load(open(sys.argv[2]))
    print("cpus=%d" % c.get("machine", {}).get("cpus", 1))
    print("mem_mb=%d" % mib(c.get("machine", {}).get("memory", "512M")))
    print("console=%s" % (c.get("console") or {}).get("mode", "off"))
    print("api=%s" % (c.get("api") or {}).get("socket", ""))
    print("log=%s" % (c.get("logging") or {}).get("file", ""))
    for d in c.get("disks") or []:
        opts = ""
        if d.get("readonly"):
            opts += ",readonly=on"
        if d.get("serial"):
            opts += ",serial=" + d["serial"]
        if d.get("num_queues", 1) != 1:
            opts += ",num_queues=%d" % d["num_queues"]
        if d.get("direct"):
            opts += ",direct=on"
        if isinstance(d.get("slot"), int):
            opts += ",slot=%d" % d["slot"]
        if d.get("packed") is False:
            opts += ",packed=off"
        print("disk=%s\t%s" % (d.get("path", ""), opts))
else:
    sys.exit("unknown mode " + mode)
PY
py() { "$python" "$sockclient" "$@"; }

# issue5_prereq NAME FEATURE-OPTION: 0 if NAME can run; otherwise it is reported
# (a missing VMM binary or option FAILs, the QEMU adapter SKIPs) and 1 returned.
issue5_prereq() {
    local name=$1 opt=$2
    : >"$live/$name.console"
    if [[ ! -x ${vmm[0]} ]]; then
        report "$name" 0 "${vmm[0]} does not exist or is not executable"
        return 1
    fi
    if [[ $qemu_mode == 1 ]]; then
        case $opt in
            --timeout|--serial) return 0 ;; # the adapter has these (and pvpanic)
        esac
        skip "$name" "the QEMU adapter has no $opt"
        return 1
    fi
    if [[ -n $opt ]] && ! help_mentions "$opt"; then
        report "$name" 0 "${vmm[0]} --help does not mention $opt (feature not built in?)"
        return 1
    fi
    return 0
}

# bg_start NAME VMM-ARGS...: the VMM in the background (stdin /dev/null,
# stdout to NAME.console, or to NAME.stdout with BG_STDOUT=1); sets BG_PID, BG_T0.
bg_start() {
    local name=$1 out
    shift
    out=$live/$name.console
    [[ ${BG_STDOUT:-0} == 1 ]] && out=$live/$name.stdout
    : >"$live/$name.console"
    BG_T0=$(now_ms)
    "${vmm[@]}" "$@" </dev/null >"$out" 2>"$live/$name.stderr" &
    BG_PID=$!
}
# bg_wait_console NAME REGEX SECONDS: 0 once the console log matches REGEX,
# 1 if the VMM exited first or SECONDS passed.
bg_wait_console() {
    local name=$1 re=$2 deadline=$(($(now_ms) + $3 * 1000))
    while :; do
        console_has "$name" "$re" && return 0
        if ! kill -0 "$BG_PID" 2>/dev/null; then
            console_has "$name" "$re"
            return
        fi
        [[ $(now_ms) -lt $deadline ]] || return 1
        sleep 0.3
    done
}
# bg_wait_exit SECONDS: BG_ST = the VMM's exit status; if it still runs after
# SECONDS it is killed, BG_ST=running and 1 is returned.
bg_wait_exit() {
    local deadline=$(($(now_ms) + $1 * 1000))
    while kill -0 "$BG_PID" 2>/dev/null && [[ $(now_ms) -lt $deadline ]]; do sleep 0.2; done
    if kill -0 "$BG_PID" 2>/dev/null; then
        kill -KILL "$BG_PID" 2>/dev/null || true
        wait "$BG_PID" 2>/dev/null || true
        BG_ST=running
        return 1
    fi
    wait "$BG_PID" && BG_ST=0 || BG_ST=$?
}
# bg_kill: end a VMM the case gave up on
bg_kill() {
    kill -KILL "$BG_PID" 2>/dev/null || true
    wait "$BG_PID" 2>/dev/null || true
}

# ctl ARGS...: `vmm ctl --socket $CTL_SOCK ARGS`; CTL_ST, CTL_OUT; logged to NAME.ctl
ctl() {
    CTL_ST=0
    CTL_OUT=$(timeout -k 5 30 "$build/vmm" ctl --socket "$CTL_SOCK" "$@" 2>&1) || CTL_ST=$?
    printf '$ vmm ctl %s -> exit %s\n%s\n' "$*" "$CTL_ST" "$CTL_OUT" >>"$live/$CTL_NAME.ctl"
}
# ctl_ok WHAT ARGS...: ctl, adding a reason to REASONS unless it exits 0
ctl_ok() {
    local what=$1
    shift
    ctl "$@"
    [[ $CTL_ST == 0 ]] || REASONS+=("$what: 'vmm ctl $*' exited $CTL_ST: $(head -c 300 <<<"$CTL_OUT")")
    [[ $CTL_ST == 0 ]]
}
ticks() { tr -d '\r' <"$live/$1.console" | grep -c '^VMMTEST: tick' || true; }

# the command line of the issue-5 cases
i5_cmdline() { # END [EXTRA]
    echo "console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.mem_mb=512 vmmtest.end=$1${2:+ $2}"
}

# json_str S: S as a JSON string (the paths here have no quotes or backslashes)
json_str() {
    [[ $1 != *[\"\\]* ]] || die "path with a quote or backslash: $1"
    printf '"%s"' "$1"
}

# json-boot: a config file alone boots the guest (2 vCPUs, 512 MiB, serial
# to a file); --print-config of it is a fixed point and parses back.
json_boot_case() {
    local name=json-boot token cfg st=0 t0 secs c p1 p2
    issue5_prereq "$name" --config || return 0
    token=$(new_token)
    cfg=$live/$name.json
    REASONS=()
    cat >"$cfg" <<EOF
{
  "machine": { "cpus": 2, "memory": "512M" },
  "boot": {
    "kernel": $(json_str "$kernel"),
    "initramfs": $(json_str "$initrd"),
    "cmdline": "console=ttyS0 panic=-1 vmmtest.cpus=2 vmmtest.mem_mb=512 vmmtest.end=poweroff vmmtest.token=$token"
  },
  "serial": { "mode": "file", "path": $(json_str "$live/$name.console") }
}
EOF
    : >"$live/$name.console"
    t0=$(now_ms)
    timeout -k 10 "$case_timeout" "${vmm[@]}" --config "$cfg" </dev/null >"$live/$name.stdout" 2>"$live/$name.stderr" || st=$?
    secs=$(elapsed_s "$t0")
    if [[ $st -eq 124 || $st -eq 137 ]]; then
        REASONS+=("timed out after ${case_timeout} s")
    elif [[ $st -ne 0 ]]; then
        REASONS+=("exit status $st, expected 0")
    fi
    console_has "$name" '^VMMTEST: init started' || REASONS+=("no 'VMMTEST: init started' in the serial file")
    console_has "$name" '^VMMTEST: done' || REASONS+=("no 'VMMTEST: done' in the serial file")
    if console_has "$name" 'VMMTEST: FAIL'; then
        REASONS+=("guest checks failed: $(tr -d '\r' <"$live/$name.console" | grep 'VMMTEST: FAIL' | tr '\n' ';')")
    fi
    for c in port "cpus 2" mem "token $token" interrupts; do
        console_has "$name" "^VMMTEST: PASS $c( |\$)" || REASONS+=("no 'VMMTEST: PASS $c' in the serial file")
    done
    # --print-config: exit 0, a fixed point, and it holds what the file said
    p1=$live/$name.print1.json p2=$live/$name.print2.json
    st=0
    "${vmm[@]}" --config "$cfg" --print-config >"$p1" 2>>"$live/$name.stderr" || st=$?
    if [[ $st -ne 0 ]]; then
        REASONS+=("--config F --print-config: exit status $st")
    else
        st=0
        "${vmm[@]}" --config "$p1" --print-config >"$p2" 2>>"$live/$name.stderr" || st=$?
        if [[ $st -ne 0 ]]; then
            REASONS+=("--print-config output does not load back with --config: exit status $st")
        elif ! cmp -s "$p1" "$p2"; then
            REASONS+=("--print-config of the printed config differs: $(diff "$p1" "$p2" | head -n 5 | tr '\n' ' ')")
        fi
        if [[ -n $python ]]; then
            [[ $(py key cpus <"$p1" 2>&1) == 2 ]] || REASONS+=("--print-config: machine.cpus is not 2")
            [[ $(py key kernel <"$p1" 2>&1) == "$kernel" ]] || REASONS+=("--print-config: boot.kernel is not $kernel")
            [[ $(py key cmdline <"$p1" 2>&1) == *"vmmtest.token=$token" ]] || REASONS+=("--print-config: boot.cmdline is not ours")
            # a command-line option overrides the file
            st=0
            [[ $("${vmm[@]}" --config "$cfg" --cpus 1 --print-config 2>>"$live/$name.stderr" | py key cpus 2>&1) == 1 ]] ||
                REASONS+=("--config F --cpus 1 --print-config does not show cpus 1")
        else
            grep -q -E '"cpus": *2' "$p1" || REASONS+=("--print-config output has no \"cpus\": 2")
        fi
    fi
    report "$name" "$secs" "${REASONS[@]}"
}

# example-NAME: examples/NAME.json boots (guest powers off, exit 0) with the
# kernel, initramfs, command line, serial (and the console, API socket and log
# file if the example has them) overridden on the command line, in a scratch
# dir that is the VMM's cwd; the disks are given again with --disk (which
# replaces the file's), same options, each a fresh 64 MiB sparse file named
# after the example's in that dir; direct=on is dropped where the dir cannot
# do O_DIRECT (tmpfs in the test host).
example_case() { # NAME: boots examples/NAME.json with test overrides
    local exname=$1 name=example-$1 ex dir eff token st t0 k v
    local -a over disks
    issue5_prereq "$name" --config || return 0
    ex=$REPO_ROOT/examples/$exname.json
    if [[ -z $python ]]; then
        skip "$name" "python3 is needed to read the example's effective config"
        return 0
    fi
    REASONS=()
    : >"$live/$name.console"
    dir=$live/ex-$exname
    rm -rf "$dir"
    mkdir -p "$dir"
    token=$(new_token)
    over=(--kernel "$kernel" --initramfs "$initrd" --serial "file=$dir/serial.log")
    # the effective config with those overrides
    eff=$dir/effective.json
    st=0
    (cd "$dir" && "${vmm[@]}" --config "$ex" "${over[@]}" --print-config) >"$eff" 2>"$dir/stderr" || st=$?
    if [[ $st -ne 0 ]]; then
        cp "$dir/stderr" "$live/$name.stderr"
        report "$name" 0 "--print-config with overrides exited $st: $(head -c 300 "$dir/stderr")"
        return 0
    fi
    local cpus=1 mem_mb=512 console=off api="" log=""
    disks=()
    while IFS='=' read -r k v; do
        case $k in
            cpus) cpus=$v ;;
            mem_mb) mem_mb=$v ;;
            console) console=$v ;;
            api) api=$v ;;
            log) log=$v ;;
            disk) disks+=("$v") ;;
        esac
    done < <(py example "$eff" 2>>"$dir/stderr")
    over+=(--cmdline "console=ttyS0 panic=-1 vmmtest.cpus=$cpus vmmtest.mem_mb=$mem_mb vmmtest.end=poweroff vmmtest.token=$token")
    [[ $console == off ]] || over+=(--console "file=$dir/hvc.log")
    [[ -z $api ]] || over+=(--api-socket "$dir/api.sock")
    [[ -z $log || $log != /* ]] || over+=(--log-file "$dir/vmm.log")
    local d opts img odirect=1 n=0
    dd if=/dev/zero of="$dir/.odirect" bs=4096 count=1 oflag=direct 2>/dev/null || odirect=0
    rm -f "$dir/.odirect"
    for d in "${disks[@]}"; do
        opts=${d#*$'\t'}
        n=$((n + 1))
        img=$dir/disk$n-$(basename "${d%%$'\t'*}")
        truncate -s 64M "$img"
        [[ $odirect == 1 ]] || opts=${opts/,direct=on/}
        over+=(--disk "path=$img$opts")
    done
    t0=$(now_ms)
    st=0
    (cd "$dir" && timeout -k 10 "$case_timeout" "${vmm[@]}" --config "$ex" "${over[@]}") \
        </dev/null >"$dir/stdout" 2>>"$dir/stderr" || st=$?
    echo "== $exname: cpus=$cpus mem=${mem_mb}M console=$console api=${api:-none} disks=${disks[*]:-none}" >"$live/$name.info"
    cp "$dir/serial.log" "$live/$name.console" 2>/dev/null || true
    cp "$dir/stderr" "$live/$name.stderr"
    if [[ $st -eq 124 || $st -eq 137 ]]; then
        REASONS+=("timed out after ${case_timeout} s")
    elif [[ $st -ne 0 ]]; then
        REASONS+=("exit status $st, expected 0")
    fi
    local c
    for c in "init started" "PASS cpus $cpus" "PASS mem" "PASS token $token" "done"; do
        console_has "$name" "^VMMTEST: $c( |\$)" || REASONS+=("no 'VMMTEST: $c' on the serial console")
    done
    if console_has "$name" 'VMMTEST: FAIL'; then
        REASONS+=("$(tr -d '\r' <"$live/$name.console" | grep 'VMMTEST: FAIL' | tr '\n' ';')")
    fi
    report "$name" "$(elapsed_s "$t0")" "${REASONS[@]}"
}

# api: the control API against a guest that waits for the power button.
api_case() {
    local name=api sock mode n1 n2 i code line alive
    issue5_prereq "$name" --api-socket || return 0
    sock=$live/$name.sock
    rm -f "$sock"
    REASONS=()
    CTL_NAME=$name CTL_SOCK=$sock
    : >"$live/$name.ctl"
    bg_start "$name" --kernel "$kernel" --initramfs "$initrd" --cpus 1 --memory 512M \
        --cmdline "$(i5_cmdline wait-power vmmtest.tick=1)" --api-socket "$sock"
    if ! bg_wait_console "$name" '^VMMTEST: waiting for the power button' "$case_timeout"; then
        REASONS+=("the guest never reached 'VMMTEST: waiting for the power button'")
        console_has "$name" 'VMMTEST: FAIL' &&
            REASONS+=("guest: $(tr -d '\r' <"$live/$name.console" | grep 'VMMTEST: FAIL' | tr '\n' ';')")
        bg_kill
        report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
        return 0
    fi
    # the socket: ours only
    if [[ -S $sock ]]; then
        mode=$(stat -c %a "$sock")
        [[ $mode == 600 ]] || REASONS+=("the API socket has mode $mode, expected 600")
    else
        REASONS+=("$sock is not a socket")
    fi
    ctl_ok ping ping || true
    if ctl_ok info info && [[ -n $python ]]; then
        [[ $(py key state <<<"$CTL_OUT" 2>&1) == running ]] || REASONS+=("info: state is not \"running\": $CTL_OUT")
        py key config <<<"$CTL_OUT" >/dev/null 2>&1 || REASONS+=("info: no \"config\" in $CTL_OUT")
        [[ $(py key kernel <<<"$CTL_OUT" 2>&1) == "$kernel" ]] || REASONS+=("info: config.boot.kernel is not $kernel")
    elif [[ $CTL_ST == 0 ]]; then
        grep -q -E '"state": *"running"' <<<"$CTL_OUT" || REASONS+=("info: no \"state\": \"running\" in $CTL_OUT")
    fi
    # pause: info says paused and the guest's once-a-second tick stops
    if ctl_ok pause pause; then
        ctl_ok info info || true
        grep -q -E '"state": *"paused"' <<<"$CTL_OUT" || REASONS+=("info after pause: state is not \"paused\": $CTL_OUT")
        sleep 1
        n1=$(ticks "$name")
        sleep 4
        n2=$(ticks "$name")
        [[ $n1 == "$n2" ]] || REASONS+=("the guest's console kept advancing while paused (ticks $n1 -> $n2 in 4 s)")
        ctl pause
        [[ $CTL_ST == 1 ]] || REASONS+=("a second pause: 'vmm ctl pause' exited $CTL_ST, expected 1 (error: already paused)")
        ctl_ok resume resume || true
        ctl_ok info info || true
        grep -q -E '"state": *"running"' <<<"$CTL_OUT" || REASONS+=("info after resume: state is not \"running\": $CTL_OUT")
        for ((i = 0; i < 100; i++)); do
            [[ $(ticks "$name") -gt $n2 ]] && break
            sleep 0.3
        done
        [[ $(ticks "$name") -gt $n2 ]] || REASONS+=("no new tick on the console within 30 s of resume")
    fi
    if ctl_ok counters counters; then
        grep -q '"devices"' <<<"$CTL_OUT" || REASONS+=("counters: no \"devices\" in $CTL_OUT")
    fi
    # errors: an unknown command (client side or server side), a bad socket path
    ctl no_such_command
    [[ $CTL_ST == 1 ]] || REASONS+=("'vmm ctl no_such_command' exited $CTL_ST, expected 1")
    CTL_SOCK=$live/no-such.sock ctl ping
    [[ $CTL_ST == 2 ]] || REASONS+=("'vmm ctl --socket <missing> ping' exited $CTL_ST, expected 2 (cannot connect)")
    # raw bad requests get structured errors and the VM keeps running
    if [[ -n $python ]]; then
        for line in 'this is not json' '{"cmd": "no_such_command", "id": 7}' '{"cmd": 5}' '[1, 2]'; do
            local resp
            resp=$(py request "$sock" "$line" 2>&1) || true
            printf '$ raw %s\n%s\n' "$line" "$resp" >>"$live/$name.ctl"
            if code=$(py error-code <<<"$resp" 2>/dev/null); then
                echo "(error code $code)" >>"$live/$name.ctl"
            else
                REASONS+=("raw request '$line' got no structured error: '$(head -c 200 <<<"$resp")'")
            fi
        done
        resp=$(py request "$sock" '{"cmd": "ping", "id": "x1"}' 2>&1) || true
        printf '$ raw ping\n%s\n' "$resp" >>"$live/$name.ctl"
        [[ $(py key id <<<"$resp" 2>&1) == x1 && $(py key ok <<<"$resp" 2>&1) == true ]] ||
            REASONS+=("raw ping with id x1: unexpected response '$resp'")
    else
        echo "  (api: raw-socket requests not tried: no python3)"
    fi
    alive=1
    kill -0 "$BG_PID" 2>/dev/null || { alive=0; REASONS+=("the VMM exited during the API requests"); }
    if [[ $alive == 1 ]]; then
        ctl_ok "ping after the bad requests" ping || true
        # the power button: the guest powers off cleanly -> exit 0
        ctl_ok power_button power_button || true
        bg_wait_exit 90 || REASONS+=("still running 90 s after power_button")
        [[ $BG_ST == 0 ]] || REASONS+=("exit status $BG_ST after power_button, expected 0")
        console_has "$name" '^VMMTEST: power button pressed' || REASONS+=("the guest saw no power button press")
        [[ ! -e $sock ]] || REASONS+=("the API socket $sock was left behind after exit")
    else
        bg_wait_exit 5 || true
    fi
    report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
}

# stop: `vmm ctl stop` ends a running guest hard: exit status 6.
stop_case() {
    local name=stop sock
    issue5_prereq "$name" --api-socket || return 0
    sock=$live/$name.sock
    rm -f "$sock"
    REASONS=()
    CTL_NAME=$name CTL_SOCK=$sock
    : >"$live/$name.ctl"
    bg_start "$name" --kernel "$kernel" --initramfs "$initrd" --cpus 1 --memory 512M \
        --cmdline "$(i5_cmdline hang)" --api-socket "$sock"
    if ! bg_wait_console "$name" '^VMMTEST: done' "$case_timeout"; then
        REASONS+=("no 'VMMTEST: done' within ${case_timeout} s")
        bg_kill
    else
        ctl_ok stop stop || true
        bg_wait_exit 30 || REASONS+=("still running 30 s after 'ctl stop'")
        [[ $BG_ST == 6 ]] || REASONS+=("exit status $BG_ST after 'ctl stop', expected 6")
    fi
    report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
}

# panic: pvpanic.ko + pvpanic-mmio.ko, then a sysrq crash with panic=0 (the
# kernel would wait forever): only pvpanic can end it, with exit status 3.
panic_case() {
    local name=panic
    issue5_prereq "$name" --timeout || return 0 # pvpanic came with --timeout
    REASONS=()
    bg_start "$name" --kernel "$kernel" --initramfs "$initrd" --cpus 1 --memory 512M \
        --cmdline "console=ttyS0 panic=0 vmmtest.cpus=1 vmmtest.mem_mb=512 vmmtest.end=panic"
    if ! bg_wait_console "$name" '^VMMTEST: done' "$case_timeout"; then
        REASONS+=("no 'VMMTEST: done' within ${case_timeout} s")
        bg_kill
    else
        bg_wait_exit 60 || REASONS+=("still running 60 s after the guest's panic (pvpanic event not seen?)")
        [[ $BG_ST == 3 ]] || REASONS+=("exit status $BG_ST, expected 3 (guest panic)")
        console_has "$name" '^VMMTEST: PASS pvpanic' ||
            REASONS+=("the guest has no pvpanic device: $(tr -d '\r' <"$live/$name.console" | grep 'VMMTEST: FAIL' | tr '\n' ';')")
        console_has "$name" 'Kernel panic' || REASONS+=("no 'Kernel panic' on the console")
    fi
    report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
}

# timeout: a guest that never ends, --timeout 20: exit status 5 after ~20 s.
# hugepages: --hugepages backs guest RAM with hugetlb pages.  With none
# reserved the VMM refuses with a message naming nr_hugepages (exit 1); with
# enough reserved a 256 MiB guest boots and powers off (exit 0), and while it
# runs at least 128 of the host's 2 MiB huge pages are taken or reserved.
# Writes /proc/sys/vm/nr_hugepages (root; the test host's own kernel) and
# puts the old value back.
hugepages_case() {
    local name=hugepages nr=/proc/sys/vm/nr_hugepages old got st=0 max=0 u
    issue5_prereq "$name" --hugepages || return 0
    if [[ ! -w $nr ]]; then
        skip "$name" "cannot write $nr (needs root)"
        return 0
    fi
    old=$(cat "$nr")
    REASONS=()
    echo 0 >"$nr"
    "${vmm[@]}" --kernel "$kernel" --initramfs "$initrd" --cpus 1 --memory 256M --hugepages \
        </dev/null >"$live/$name.none" 2>&1 || st=$?
    [[ $st == 1 ]] || REASONS+=("with no huge pages reserved: exit status $st, expected 1")
    grep -q 'nr_hugepages' "$live/$name.none" ||
        REASONS+=("with no huge pages reserved: no hint about nr_hugepages in '$(head -c 200 "$live/$name.none")'")
    echo 160 >"$nr"
    got=$(cat "$nr")
    if [[ $got -lt 128 ]]; then
        echo "$old" >"$nr"
        skip "$name" "only $got huge pages could be reserved (fragmented memory), 128 needed"
        return 0
    fi
    bg_start "$name" --kernel "$kernel" --initramfs "$initrd" --cpus 1 --memory 256M --hugepages \
        --cmdline "console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.mem_mb=256 vmmtest.end=poweroff"
    while kill -0 "$BG_PID" 2>/dev/null; do
        # in use = total - free, plus reserved-but-not-yet-faulted
        u=$(awk '/^HugePages_Total/ {t=$2} /^HugePages_Free/ {f=$2} /^HugePages_Rsvd/ {r=$2} END {print t-f+r}' /proc/meminfo)
        [[ $u -gt $max ]] && max=$u
        [[ $(($(now_ms) - BG_T0)) -lt $((case_timeout * 1000)) ]] || break
        sleep 0.5
    done
    bg_wait_exit 10 || REASONS+=("still running after ${case_timeout} s")
    echo "$old" >"$nr"
    [[ $BG_ST == 0 ]] || REASONS+=("exit status $BG_ST, expected 0")
    [[ $max -ge 128 ]] || REASONS+=("at most $max huge pages were in use while the guest ran, expected >= 128")
    console_has "$name" '^VMMTEST: PASS mem' || REASONS+=("no 'VMMTEST: PASS mem' on the console")
    console_has "$name" '^VMMTEST: done' || REASONS+=("no 'VMMTEST: done' on the console")
    echo "huge pages in use at most: $max" >>"$live/$name.stderr"
    report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
}

timeout_case() {
    local name=timeout secs ms
    issue5_prereq "$name" --timeout || return 0
    REASONS=()
    bg_start "$name" --kernel "$kernel" --initramfs "$initrd" --cpus 1 --memory 512M \
        --cmdline "$(i5_cmdline hang)" --timeout 20
    bg_wait_exit $((20 + 60)) || REASONS+=("still running 80 s after start with --timeout 20")
    ms=$(($(now_ms) - BG_T0))
    secs=$(elapsed_s "$BG_T0")
    [[ $BG_ST == 5 ]] || REASONS+=("exit status $BG_ST, expected 5 (timeout)")
    # from the VMM's start; 40 s leaves room for a loaded machine's process start-up
    [[ $ms -ge 19500 && $ms -le 40000 ]] || REASONS+=("exited after $secs s, expected about 20 s")
    report "$name" "$secs" "${REASONS[@]}"
}

# console-socket: --serial socket=PATH; a client reads the guest's console.
console_socket_case() {
    local name=console-socket sock st=0
    issue5_prereq "$name" --serial || return 0
    if [[ $qemu_mode == 0 ]] && ! help_mentions 'socket='; then
        report "$name" 0 "${vmm[0]} --help does not mention socket= (feature not built in?)"
        return 0
    fi
    if [[ -z $python ]]; then
        skip "$name" "python3 is needed for the socket client"
        return 0
    fi
    sock=$live/$name.sock
    rm -f "$sock"
    REASONS=()
    BG_STDOUT=1 bg_start "$name" --kernel "$kernel" --initramfs "$initrd" --cpus 1 --memory 512M \
        --cmdline "$(i5_cmdline poweroff)" --serial "socket=$sock"
    # the client connects as soon as the socket exists and reads to the end of the checks
    py read "$sock" '^VMMTEST: done' "$case_timeout" 30 >"$live/$name.console" 2>"$live/$name.client" || st=$?
    [[ $st == 0 ]] || REASONS+=("the socket client saw no 'VMMTEST: done' (status $st: $(head -c 200 "$live/$name.client"))")
    console_has "$name" '^VMMTEST: init started' || REASONS+=("no 'VMMTEST: init started' through the socket")
    console_has "$name" '^VMMTEST: PASS cpus 1' || REASONS+=("no 'VMMTEST: PASS cpus 1' through the socket")
    bg_wait_exit 60 || REASONS+=("still running 60 s after the client read 'VMMTEST: done'")
    [[ $BG_ST == 0 ]] || REASONS+=("exit status $BG_ST, expected 0")
    report "$name" "$(elapsed_s "$BG_T0")" "${REASONS[@]}"
}

# serial-ports: two named virtio-serial ports on UNIX sockets beside hvc0
# (--console file=, --serial-port name=...,socket=...). A socket client on
# each (python3, sockclient.py serial); the guest (vmmtest.blk=serial) finds
# both names in /sys/class/virtio-ports, writes a line on port one, reads the
# client's reply and closes the port: the client must see EOF. On port two
# the client answers and disconnects: the guest must read the line, then
# EOF. The sockets are 0600 while the VM runs and gone after it.
serial_ports_case() {
    local name=serial-ports token one_in two_in s1 s2 pid p1 p2 st1=0 st2=0 t0 i mode
    local n1=org.vmmtest.one n2=org.vmmtest.two
    blk_prereq
    [[ -z $BLK_WHY ]] || { blk_skip "$name" "$BLK_WHY"; return; }
    if [[ -z $python ]]; then
        skip "$name" "python3 is needed for the socket clients"
        return
    fi
    if [[ $qemu_mode == 0 ]] && ! help_mentions '--serial-port'; then
        report "$name" 0 "${vmm[0]} --help does not mention --serial-port"
        return
    fi
    blk_prepare "$name"
    token=$(new_token)
    one_in="host-one-$(new_token)"
    two_in="host-two-$(new_token)"
    s1=$live/$name.one.sock s2=$live/$name.two.sock
    rm -f "$s1" "$s2"
    : >"$live/$name.hvc"
    : >"$live/$name.console"
    local -a log_opt=()
    [[ $qemu_mode == 1 ]] || log_opt=(--log-level info)
    REASONS=()
    t0=$(now_ms)
    timeout -k 10 "$case_timeout" "${vmm[@]}" --kernel "$kernel" --initramfs "$blk_initrd" \
        --cmdline "console=ttyS0 panic=-1 vmmtest.cpus=1 vmmtest.blk=serial vmmtest.token=$token vmmtest.ser_names=$n1,$n2 vmmtest.ser_one=$one_in vmmtest.ser_two=$two_in" \
        --cpus 1 --memory 512M --serial "file=$live/$name.console" --disk "path=$live/img/$name-root.img" \
        --console "file=$live/$name.hvc" --serial-port "name=$n1,socket=$s1" --serial-port "name=$n2,socket=$s2" \
        "${log_opt[@]}" </dev/null >"$live/$name.stdout" 2>"$live/$name.stderr" &
    pid=$!
    py serial "$s1" "^VMMTEST-SERIAL one $token\$" "$one_in" eof "$case_timeout" 60 >"$live/$name.one" 2>&1 &
    p1=$!
    py serial "$s2" "^VMMTEST-SERIAL two $token\$" "$two_in" close "$case_timeout" 60 >"$live/$name.two" 2>&1 &
    p2=$!
    for ((i = 0; i < 300; i++)); do
        [[ -S $s1 ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $qemu_mode == 0 ]]; then
        mode=$(stat -c %a "$s1" 2>/dev/null || echo missing)
        [[ $mode == 600 ]] || REASONS+=("the serial port socket has mode $mode, expected 600")
    fi
    wait "$pid" && BLK_ST=0 || BLK_ST=$?
    wait "$p1" || st1=$?
    wait "$p2" || st2=$?
    BLK_SECS=$(elapsed_s "$t0")
    blk_common "$name" serial-names serial-host-to-guest serial-host-eof
    [[ $st2 == 0 ]] || REASONS+=("client two: status $st2: $(tail -c 200 "$live/$name.two")")
    grep -q -F "VMMTEST-SERIAL two $token" "$live/$name.two" ||
        REASONS+=("client two never got the guest's line on $n2")
    grep -q -F "VMMTEST-SERIAL one $token" "$live/$name.one" ||
        REASONS+=("client one never got the guest's line on $n1")
    if [[ $qemu_mode == 0 ]]; then
        # the VMM closes the connection when the guest closes the port (QEMU does not)
        [[ $st1 == 0 ]] && grep -q -F '<EOF>' "$live/$name.one" ||
            REASONS+=("client one saw no EOF after the guest closed $n1 (status $st1: $(tail -c 200 "$live/$name.one"))")
        grep -q "serial port $n1: the guest closed the port" "$live/$name.stderr" ||
            REASONS+=("no 'serial port $n1: the guest closed the port' in the VMM's log")
        [[ ! -e $s1 && ! -e $s2 ]] || REASONS+=("a serial port socket was left behind after exit")
    fi
    # hvc0 works beside the named ports: the guest's reports went there too
    tr -d '\r' <"$live/$name.hvc" | grep -F -- 'VMMTEST: PASS serial-names' >/dev/null ||
        REASONS+=("no 'VMMTEST: PASS serial-names' in the --console file (hvc0)")
    report "$name" "$BLK_SECS" "${REASONS[@]}"
}

suite_t0=$(now_ms)
# Heartbeat for the outer run's wedge detector: a test host whose emulated
# CPU stops taking interrupts also stops this loop.
if [[ -n ${TESTHOST_SCRATCH:-} ]]; then
    (while :; do date +%s >"$logdir/.heartbeat"; sleep 5; done) </dev/null >/dev/null 2>&1 &
    heartbeat_pid=$!
    trap 'kill $heartbeat_pid 2>/dev/null; rm -rf "$live"' EXIT
fi
for c in "${selected[@]}"; do
    echo "$c" >"$logdir/.current"
    case $c in
        bzimage-1cpu) guest_case "$c" "$kernel" 1 poweroff 0 ;;
        bzimage-4cpu) guest_case "$c" "$kernel" 4 poweroff 0 ;;
        pvh-1cpu) guest_case "$c" "$vmlinux" 1 poweroff 0 ;;
        pvh-4cpu) guest_case "$c" "$vmlinux" 4 poweroff 0 ;;
        reboot) guest_case "$c" "$kernel" 1 reboot 2 ;;
        sigterm) sigterm_case "$kernel" ;;
        bad-kernel) bad_kernel_case ;;
        kvm_tests) kvm_tests_case ;;
        blk-root) blk_root_case ;;
        blk-integrity) blk_integrity_case ;;
        blk-split) blk_integrity_case blk-split ;;
        rng) rng_case ;;
        balloon) balloon_case ;;
        balloon-report) balloon_report_case ;;
        net) net_case net 1 1 "${VMM_NET_MIB:-64}" ;;
        net-mq) net_case net-mq 2 2 8 packed=off ;;  # split rings; net has the default, packed
        scsi) scsi_case ;;
        scsi-256) scsi_many_case 256 ;;
        blk-discard) blk_discard_case ;;
        blk-mq) blk_mq_case ;;
        blk-intx) blk_intx_case ;;
        console) console_case ;;
        json-boot) json_boot_case ;;
        example-*) example_case "${c#example-}" ;;
        api) api_case ;;
        stop) stop_case ;;
        panic) panic_case ;;
        timeout) timeout_case ;;
        hugepages) hugepages_case ;;
        console-socket) console_socket_case ;;
        serial-ports) serial_ports_case ;;
    esac
done

echo "== suite took $(elapsed_s "$suite_t0") s; logs in $logdir"
[[ $failed -gt 0 ]] && echo "failed: ${failures[*]}"
[[ $skipped -gt 0 ]] && echo "skipped: $skipped"
if [[ -n ${VMM_GUEST_ROUND:-} ]]; then
    # one test host's share; the outer run prints the suite's summary
    echo "this test host: $passed passed, $failed failed"
else
    echo "$passed passed, $failed failed" | tee "$logdir/summary"
fi
if [[ $failed -gt 0 ]]; then
    exit 1
fi
exit 0
