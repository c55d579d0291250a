# aduflash A/B boot script for U-Boot, variable preset "rauc" (RAUC's variables, so boards and
# tools that follow RAUC's conventions keep working).
#
# Compile:  SOURCE_DATE_EPOCH=0 mkimage -A arm64 -O linux -T script -C none -n aduflash-rauc -d boot-rauc.cmd boot-rauc.scr
#
# BOOT_ORDER lists the banks to try; BOOT_<bank>_LEFT counts the boots each may still have.
# This script boots the first bank in BOOT_ORDER with attempts left and spends one (setexpr
# writes the count in hex). No bootcount or altbootcmd is involved. The agent (package
# bootloader, preset "rauc") writes in ONE environment transaction:
#   MarkPending(B): BOOT_ORDER="B A" BOOT_B_LEFT=<attempts> adu_pending=B
#   Confirm(B):     BOOT_B_LEFT=<attempts>, adu_pending deleted (also at every healthy boot)
#   MarkBad(B):     BOOT_B_LEFT=0, adu_pending deleted
#
# Board-specific: adu_root_A, adu_root_B and adu_load, as in boot.cmd.

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv adu_slot
for BOOT_SLOT in "${BOOT_ORDER}"; do
	if test -n "${adu_slot}"; then
		echo "aduflash: ${BOOT_SLOT} not needed"
	elif test "${BOOT_SLOT}" = "A"; then
		if itest ${BOOT_A_LEFT} -gt 0; then
			setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
			setenv adu_slot A
			setenv adu_root "${adu_root_A}"
		fi
	elif test "${BOOT_SLOT}" = "B"; then
		if itest ${BOOT_B_LEFT} -gt 0; then
			setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
			setenv adu_slot B
			setenv adu_root "${adu_root_B}"
		fi
	fi
done

if test -n "${adu_slot}"; then
	saveenv
else
	echo "aduflash: no bank has attempts left, resetting them to 3"
	setenv BOOT_A_LEFT 3
	setenv BOOT_B_LEFT 3
	saveenv
	reset
fi
setenv bootargs "root=${adu_root} rootwait adu.slot=${adu_slot} ${adu_bootargs}"
echo "aduflash: booting bank ${adu_slot} (BOOT_ORDER=${BOOT_ORDER} BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT})"
run adu_load
echo "aduflash: bank ${adu_slot} did not boot"
