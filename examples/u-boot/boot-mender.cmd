# aduflash A/B boot script for U-Boot, variable preset "mender" (Mender's variables, so boards
# and tools that follow Mender's conventions keep working).
#
# Compile:  SOURCE_DATE_EPOCH=0 mkimage -A arm64 -O linux -T script -C none -n aduflash-mender -d boot-mender.cmd boot-mender.scr
#
# Mender's default environment holds (CONFIG_BOOTCOUNT_LIMIT + CONFIG_BOOTCOUNT_ENV):
#   bootlimit=1
#   altbootcmd=run mender_altbootcmd; run bootcmd
#   mender_altbootcmd=if test ${mender_boot_part} = 2; then setenv mender_boot_part 3;
#       setenv mender_boot_part_hex 3; else setenv mender_boot_part 2;
#       setenv mender_boot_part_hex 2; fi; setenv upgrade_available 0; saveenv
# The agent (package bootloader, preset "mender", banks A=2 and B=3 by default) writes in ONE
# environment transaction:
#   MarkPending(B): mender_boot_part=3 mender_boot_part_hex=3 upgrade_available=1 bootcount=0
#   Confirm(B):     upgrade_available=0 bootcount=0
#   MarkBad(B):     mender_boot_part=2 mender_boot_part_hex=2 upgrade_available=0 bootcount=0 adu_bad="B"
#
# Board-specific: mender_kernel_root_base (e.g. /dev/mmcblk0p) and adu_load, which loads and
# starts the kernel of partition ${mender_boot_part} with ${bootargs}.

test -n "${mender_boot_part}" || setenv mender_boot_part 2
if test "${mender_boot_part}" = "3"; then
	setenv adu_slot B
else
	setenv adu_slot A
fi
setenv bootargs "root=${mender_kernel_root_base}${mender_boot_part} rootwait adu.slot=${adu_slot} ${adu_bootargs}"
echo "aduflash: booting partition ${mender_boot_part} (upgrade_available=${upgrade_available} bootcount=${bootcount} bootlimit=${bootlimit})"
run adu_load
echo "aduflash: partition ${mender_boot_part} did not boot"
