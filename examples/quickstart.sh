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
# Everything goes to a work folder (default: a new temp dir; ADUFLASH_WORK=DIR to keep it).
# Exits 0 only when every step did what it says.
set -euo pipefail
cd "$(dirname "$0")/.."

work=${ADUFLASH_WORK:-$(mktemp -d)}
mkdir -p "$work"
bin="$work/bin"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

step "building aduimport and aduflash into $bin"
mkdir -p "$bin"
CGO_ENABLED=0 go build -o "$bin/" ./cmd/aduimport ./cmd/aduflash ./internal/cmd/genpayload
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

step "done: artifacts in $work"
