#!/usr/bin/env bash
# aduflash quick start: what a CI pipeline does to produce update artifacts.
#   1. build aduimport          2. generate a signing key
#   3. sign a rootfs payload into an aduimg image (zstd, 1 MiB chunks)
#   4. inspect and verify it, and show that a tampered copy is refused
#   5. write the ADU import manifest for it and check it with the service's limits
#   6. sign an MCU firmware as an MCUboot image and verify it
#   7. on the device side: write the image into bank B's rootfs slot with aduflash (verified
#      while it streams, read back after), and mark bank B pending in a redundant U-Boot
#      environment in one transaction, as the agent will
#   8. the agent on a simulated device (file slots, a U-Boot env in a file, a kernel command
#      line in a file; no root): aduagent install --no-reboot leaves bank B pending; after the
#      simulated reboot into B, aduagent run health-checks and confirms B before it tries to
#      reach IoT Hub (there is none here); a tampered image is refused with nothing pending
# Everything goes to a work folder (default: a new temp dir; ADUFLASH_WORK=DIR to keep it).
# Exits 0 only when every step did what it says.
set -euo pipefail
cd "$(dirname "$0")/.."

work=${ADUFLASH_WORK:-$(mktemp -d)}
mkdir -p "$work"
bin="$work/bin"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

step "building aduimport, aduflash and aduagent into $bin"
mkdir -p "$bin"
CGO_ENABLED=0 go build -o "$bin/" ./cmd/aduimport ./cmd/aduflash ./cmd/aduagent ./internal/cmd/genpayload ./internal/cmd/jsonget
adu="$bin/aduimport"

step "generating an ed25519 signing key"
"$adu" keygen --type ed25519 -o "$work/release.pem" --force

step "making a 24 MiB sample root file system (deterministic test data)"
"$bin/genpayload" -size 24MiB -seed 42 -o "$work/rootfs.ext4"

step "signing it: aduimport sign --compress zstd"
"$adu" sign --key "$work/release.pem" --version 1.2.0 --slot-class rootfs \
	--compat manufacturer=contoso,model=toaster --compress zstd \
	-o "$work/rootfs-1.2.0.aduimg" "$work/rootfs.ext4"
ls -l "$work/rootfs.ext4" "$work/rootfs-1.2.0.aduimg"

step "inspecting the image header"
"$adu" inspect "$work/rootfs-1.2.0.aduimg"

step "verifying it with the public key"
"$adu" verify --pub "$work/release.pub.pem" "$work/rootfs-1.2.0.aduimg"

step "a copy with one flipped byte must be refused (exit 1)"
cp "$work/rootfs-1.2.0.aduimg" "$work/tampered.aduimg"
size=$(stat -c %s "$work/tampered.aduimg")
printf '\x5a' | dd of="$work/tampered.aduimg" bs=1 seek=$((size / 2)) conv=notrunc status=none
set +e
"$adu" verify --pub "$work/release.pub.pem" "$work/tampered.aduimg"
rc=$?
set -e
[ "$rc" = 1 ] || fail "tampered image: exit $rc, want 1"
echo "refused, exit $rc: as it should be"

step "writing the ADU import manifest (v5)"
(cd "$work" && "$adu" manifest create --provider Contoso --name Toaster --version 1.2.0 \
	--compat manufacturer=contoso,model=toaster \
	--step 'handler=aduflash/image:1,properties={"installedCriteria":"1.2.0","slotClass":"rootfs"}' \
	--file rootfs-1.2.0.aduimg \
	--description "Toaster root file system 1.2.0")
cat "$work/Contoso.Toaster.1.2.0.importmanifest.json"

step "checking it against the service's limits"
"$adu" manifest check "$work/Contoso.Toaster.1.2.0.importmanifest.json"

step "an MCU firmware: MCUboot image signed with an ecdsa-p256 key (imgtool-compatible)"
"$adu" keygen --type ecdsa-p256 -o "$work/mcu.pem" --force
"$bin/genpayload" -size 96KiB -seed 7 -o "$work/zephyr.bin"
"$adu" mcuboot sign -k "$work/mcu.pem" --version 1.2.0+7 --header-size 0x200 --pad-header \
	--slot-size 0x40000 --align 4 "$work/zephyr.bin" "$work/zephyr.signed.bin"
"$adu" mcuboot verify -k "$work/mcu.pub.pem" "$work/zephyr.signed.bin"
"$adu" mcuboot dump "$work/zephyr.signed.bin"

step "device side: aduflash write puts the image into bank B's rootfs slot (a file here)"
"$bin/aduflash" write --pub "$work/release.pub.pem" "$work/rootfs-1.2.0.aduimg" "$work/rootfs-b.img"
cmp -n "$(stat -c %s "$work/rootfs.ext4")" "$work/rootfs.ext4" "$work/rootfs-b.img" || fail "slot content differs from the payload"
echo "bank B's slot holds exactly the signed payload"

step "device side: bank B marked pending in a redundant U-Boot environment, one transaction"
printf 'uboot:\n  size: 0x4000\n  lockfile: %s\n  devices:\n    - path: %s\n      offset: 0x0\n    - path: %s\n      offset: 0x4000\n' \
	"$work/fw_env.lock" "$work/uboot.env" "$work/uboot.env" >"$work/fw_env.yaml"
truncate -s 32K "$work/uboot.env"
"$bin/aduflash" env set -c "$work/fw_env.yaml" bootcmd='run adu_boot' adu_slot=A
printf 'adu_slot=B\nadu_prev_slot=A\nupgrade_available=1\nbootcount=0\nbootlimit=3\n' |
	"$bin/aduflash" env set -c "$work/fw_env.yaml" --script -
"$bin/aduflash" env print -c "$work/fw_env.yaml"
"$bin/aduflash" env doctor -c "$work/fw_env.yaml"
[ "$("$bin/aduflash" env print -c "$work/fw_env.yaml" -n adu_slot)" = B ] || fail "bank B is not pending"

# The agent on a simulated device: everything in $dev, nothing needs root.
dev="$work/device"
rm -rf "$dev"
mkdir -p "$dev/state"
# aduagent with this device's config, whose cmdline_file stands in for /proc/cmdline.
agent() { "$bin/aduagent" --config "$dev/aduagent.toml" "$@"; }
# jqs PATH: one value of `aduagent status --json` (null or missing: empty).
jqs() { agent status --json | "$bin/jsonget" "$1"; }

step "agent: a simulated device: file slots, a redundant U-Boot env, bank A running"
truncate -s 32MiB "$dev/rootfs-a.img" "$dev/rootfs-b.img"
truncate -s 32K "$dev/uboot.env"
printf '# device offset env-size\n%s 0x0 0x4000\n%s 0x4000 0x4000\n' "$dev/uboot.env" "$dev/uboot.env" >"$dev/fw_env.config"
"$bin/aduflash" env set -c "$dev/fw_env.config" bootcmd='run adu_boot' adu_slot=A
echo 'console=ttyS0 root=/dev/mmcblk0p2 adu.slot=A rootwait' >"$dev/cmdline"
cat >"$dev/aduagent.toml" <<TOML
[slots]
active = "cmdline"
# The kernel command line of this simulated device: writing adu.slot=B into it plays the
# reboot into bank B.
cmdline_file = "$dev/cmdline"
banks = ["A", "B"]

[[slots.slot]]
class = "rootfs"
bank = "A"
type = "file"
path = "$dev/rootfs-a.img"
size = "32MiB"

[[slots.slot]]
class = "rootfs"
bank = "B"
type = "file"
path = "$dev/rootfs-b.img"
size = "32MiB"

[bootloader]
type = "u-boot"
preset = "aduflash"
env_config = "$dev/fw_env.config"
lock_file = "$dev/fw_env.lock"

[agent]
# Nothing listens on 127.0.0.1:8883 here: run never gets connected, and does not need to.
connection_string = "HostName=127.0.0.1;DeviceId=quickstart;SharedAccessKey=cXVpY2tzdGFydC1ub3QtYS1yZWFsLWtleQ=="
manufacturer = "contoso"
model = "toaster"
state_dir = "$dev/state"
pub = ["$work/release.pub.pem"]
reboot_command = ["true"]
health_timeout = "20s"

[[agent.health_check]]
name = "app"
command = ["true"]
timeout = "5s"
TOML
chmod 600 "$dev/aduagent.toml" # it holds the device key (connection_string)
cat "$dev/aduagent.toml"
agent status

step "agent (a): aduagent install --no-reboot writes the signed image into bank B and marks it pending"
agent install --no-reboot "$work/rootfs-1.2.0.aduimg"
agent status
[ "$(jqs .bootloader.state.pending)" = B ] || fail "after install: bank B is not pending"
[ "$(jqs .active)" = A ] || fail "after install: the running bank is not A"
[ "$(jqs .journal.record.deployment.bank)" = B ] || fail "after install: the journal has no deployment into bank B"
cmp -n "$(stat -c %s "$work/rootfs.ext4")" "$work/rootfs.ext4" "$dev/rootfs-b.img" || fail "bank B's slot differs from the payload"
echo "bank B holds the payload and is pending (U-Boot boots it next, on trial)"

step "agent (b): simulated reboot into B (adu.slot=B); aduagent run health-checks and confirms B before it dials IoT Hub"
echo 'console=ttyS0 root=/dev/mmcblk0p3 adu.slot=B rootwait' >"$dev/cmdline"
set +e
timeout --preserve-status -s TERM 3 "$bin/aduagent" --config "$dev/aduagent.toml" run 2>&1 | tee "$dev/run.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || fail "aduagent run: exit $rc, want 0 (stopped by SIGTERM)"
confirmed=$(grep -n 'health checks passed; bank confirmed' "$dev/run.log" | cut -d: -f1 | head -1)
[ -n "$confirmed" ] || fail "aduagent run did not confirm bank B (log above)"
dialled=$(grep -n 'IoT Hub' "$dev/run.log" | cut -d: -f1 | head -1)
[ -z "$dialled" ] || [ "$confirmed" -lt "$dialled" ] || fail "aduagent run tried IoT Hub before it confirmed bank B (log above)"
agent status
[ "$(jqs .bootloader.state.primary)" = B ] || fail "after run: the primary bank is not B"
[ "$(jqs .bootloader.state.pending)" = "" ] || fail "after run: a bank is still pending"
[ "$(jqs .journal.record.deployment)" = "" ] || fail "after run: the journal still has a deployment in progress"
[ "$(jqs .journal.record.last.succeeded)" = true ] || fail "after run: the last deployment is not recorded as succeeded"
"$bin/aduflash" env print -c "$dev/fw_env.config"
echo "bank B confirmed: primary, nothing pending, the deployment recorded as succeeded"

step "agent (c): a tampered image must be refused by aduagent install (exit 1), nothing pending"
set +e
agent install --no-reboot "$work/tampered.aduimg"
rc=$?
set -e
[ "$rc" = 1 ] || fail "tampered image: aduagent install exit $rc, want 1"
[ "$(jqs .bootloader.state.pending)" = "" ] || fail "after the tampered install: a bank is pending"
[ "$(jqs .bootloader.state.primary)" = B ] || fail "after the tampered install: the primary bank is not B"
[ "$(jqs .journal.record.deployment)" = "" ] || fail "after the tampered install: the journal has a deployment in progress"
[ "$(jqs .journal.record.last.succeeded)" = false ] || fail "after the tampered install: the journal does not record it as failed"
echo "journal, last deployment: $(jqs .journal.record.last.details)"
echo "refused, exit $rc; nothing pending, bank B still primary (bank A's slot, the spare one now, may"
echo "hold the part of the image that came before the bad chunk; it is not marked pending)"

step "done: artifacts in $work"
