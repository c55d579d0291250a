# aduflash A/B boot script for U-Boot, variable preset "aduflash".
#
# Compile:  SOURCE_DATE_EPOCH=0 mkimage -A arm64 -O linux -T script -C none -n aduflash -d boot.cmd boot.scr
#
# Needs U-Boot with CONFIG_BOOTCOUNT_LIMIT and CONFIG_BOOTCOUNT_ENV: while upgrade_available=1
# U-Boot increments and saves bootcount at every reset, and once bootcount > bootlimit it
# runs altbootcmd instead of bootcmd. The agent (package bootloader, preset "aduflash") writes
# in ONE environment transaction:
#   MarkPending(B): adu_slot=B adu_prev_slot=A upgrade_available=1 bootcount=0 bootlimit=N
#                   altbootcmd=<the rollback below>
#   Confirm(B):     upgrade_available=0 bootcount=0, adu_prev_slot deleted
#   MarkBad(B):     adu_slot=A upgrade_available=0 bootcount=0 adu_bad="B"
# altbootcmd records the bank as bad, returns to adu_prev_slot, saves and boots:
#   setenv adu_bad "${adu_bad} ${adu_slot}"; setenv adu_slot ${adu_prev_slot};
#   setenv adu_prev_slot; setenv upgrade_available 0; setenv bootcount 0; saveenv; run bootcmd
#
# Board-specific pieces come from the environment:
#   adu_root_A, adu_root_B  root= of each bank (e.g. /dev/mmcblk0p2, /dev/mmcblk0p3)
#   adu_load                loads and starts bank ${adu_slot}'s kernel with ${bootargs},
#                           e.g. "load mmc 0:${adu_part} ${kernel_addr_r} /boot/Image; booti ${kernel_addr_r} - ${fdtcontroladdr}"
# Linux learns the bank from adu.slot= on its command line (the agent's active-slot source).

test -n "${adu_slot}" || setenv adu_slot A
if test "${adu_slot}" = "B"; then
	setenv adu_root "${adu_root_B}"
else
	setenv adu_root "${adu_root_A}"
fi
setenv bootargs "root=${adu_root} rootwait adu.slot=${adu_slot} ${adu_bootargs}"
echo "aduflash: booting bank ${adu_slot} (upgrade_available=${upgrade_available} bootcount=${bootcount} bootlimit=${bootlimit})"
run adu_load
echo "aduflash: bank ${adu_slot} did not boot"
