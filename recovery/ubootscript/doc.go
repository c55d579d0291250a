// Package ubootscript generates the U-Boot commands that recover a board over TFTP: each
// image is loaded into RAM, checked there against the hash the workstation computed, written
// into its slot, read back and checked again; then a fresh environment makes the chosen bank
// primary, and the board resets. The output is a list of named steps (Script.Steps; as
// recovery/console runs them: Script.ConsoleSteps), the same commands as a plain file
// (Script.Text), and that file as a script image for U-Boot's `source` (Script.Image), byte
// for byte what u-boot-tools' `mkimage -T script` makes of it.
//
// # Where the slots are
//
// The [slots] section says where Linux finds each slot; the [uboot] section (Config) says
// what U-Boot needs besides: the RAM to load into (load_addr, load_size), the mmc device of
// the block slots (mmc_dev), U-Boot's mtdids and mtdparts for raw flash, the MTD partition
// UBI lives in (ubi_part) and how to probe SPI NOR (sf_probe). Then:
//
//   - a block slot that is a GPT partition (partlabel, partuuid, /dev/mmcblkNpM) is written
//     with `mmc write` at the partition's first block as the disk's own GPT says (Board.GPT,
//     read from the disk image or the block device with internal/gptdisk): no offset is typed
//     by hand. Before anything is loaded, a locate step asks the board's U-Boot (`part start`,
//     `part size`, `part uuid`) and stops unless its GPT agrees;
//   - a block slot on the whole disk (/dev/mmcblkN) at its offset, and an eMMC boot partition
//     (/dev/mmcblkNbootM: hardware partition M+1), likewise with `mmc write`; a partial last
//     block is padded with zeros;
//   - a NAND slot is its MTD partition, written by name: `nand erase.part` then `nand write`
//     (both skip bad blocks). U-Boot confines a write by partition name to the partition: when
//     the bad blocks leave too little room it refuses the write before programming a page
//     ("Size of write exceeds partition or device limit") and the script stops; the
//     partition's erased blocks stay erased. A NAND slot must therefore start its partition.
//     With mtdids and mtdparts configured the script sets them, so U-Boot knows the
//     partitions even on a board whose environment is gone;
//   - a UBI slot with `ubi part` and `ubi write` (one volume update);
//   - a NOR slot on SPI flash with `sf probe` and `sf update`, at its partition's offset in
//     mtdparts plus the slot's offset.
//
// # Checks
//
// U-Boot's hash command (`hash sha256`, or `hash crc32` with Options.Check) writes the digest
// into a variable that `test` compares with the workstation's; this U-Boot has no verify
// option for crc32 or hash, which a test of the real peer confirmed. SHA-256 is the default:
// TFTP is unauthenticated, and a CRC can be forged where a SHA-256 cannot, so the check
// carries the image's signature, verified on the workstation, to what the board received.
// The load step also checks that the size arrived whole. Each step ends with a verdict line:
// console.DonePrefix and the step once it succeeded; console.FailPrefix, the step and why
// when it failed, which also sets adu_failed; every later command that loads, writes or
// resets is gated on it (`test -z "${adu_failed}" && ...`), so an image that arrived
// corrupted is never written, nor is the environment, and the board stays at the prompt. The
// real U-Boot showed why it is done so: its shell ignores `exit` in a sourced script, and it
// reads a single quote inside double quotes, so no message holds one. The line before the
// verdict runs the step's condition inside `if ...; then ...; else ...; fi`, so that it ends
// with status 0 whether the condition holds or not (an `if` without `else` ends with the
// condition's status): a console driver, which checks the status of every line, stops at
// the verdict, not before it.
//
// # The environment
//
// The env step runs `env default -a`, sets the board's variables of the [uboot.env] table
// (Config.Env: what the board's default environment lacks, such as the boot script's
// adu_load, or a bootcmd) and then the preset's for the bank (bootloader.FreshVars: adu_slot,
// Mender's or RAUC's), and runs `saveenv` twice. This is what
// works on a bricked board: U-Boot writes its environment where it reads it (whatever its
// storage: MMC, NAND with bad blocks, UBI, SPI), with the CRC and redundancy flags it expects,
// and from a default environment it already runs on when both copies are erased; an image
// made on the workstation would need the env's place in U-Boot's terms, which fw_env.config
// gives only in Linux's, and a mistake there overwrites a slot. Saving twice puts the fresh
// environment into both copies of a redundant one, so an old copy with a newer counter cannot
// win later. What neither the default environment nor [uboot.env] holds is lost: the board's
// variables belong in its default environment (CONFIG_EXTRA_ENV_SETTINGS) or in [uboot.env];
// the anti-rollback floors (adu_sec_floor) are lost too — the agent raises them again as it
// confirms updates.
//
// Every command is at most console.MaxCommand bytes (U-Boot's console buffer on many boards,
// less the status marker recovery/console appends to each line it types); names that U-Boot's
// shell would read (spaces, quotes, ';', '$') are refused, not quoted.
package ubootscript
