// Package slots owns the slot model of a device and the writers that fill a slot.
//
// # Model
//
// A slot is one storage area that holds one payload class (rootfs, kernel, firmware, ...).
// Slots are grouped into banks ("A" and "B"): all classes of a bank switch together in one
// bootloader transition. A [slots.class.NAME] table says what a deployment that does not
// write a class does with the spare bank's slot of it (Config.Spare): copy the running bank's
// (SpareCopy, the default), leave it alone (SpareKeep), or there is one slot without a bank
// that every bank uses (SpareShared, a data partition), which is never written. The layout is the [slots] section of the device's TOML config file
// (see examples/aduagent.toml); LoadConfig reads only that section and ignores the others.
// A slot names its storage: a file, a block device or partition (by path, GPT PARTLABEL or
// PARTUUID through /dev/disk/by-partlabel and by-partuuid, or, on a system without udev
// (busybox mdev) where those links are missing, from the GPT of each disk in sysfs, read with
// u-root's GPT reader), an eMMC boot partition (whose
// /sys/block/<dev>/force_ro is cleared for the write and restored after), a raw MTD device
// (by name or number, NOR or NAND) or a UBI volume (by name).
//
// An MCU attached to the gateway (a [[slots.mcu]] entry: serial port or UDP address, slot
// size, its keys and health command) is a slot that no bank owns, of a class of its own
// (Config.MCU). Layout.MCUTarget makes it a write target over an MCULink (which the agent
// implements with an SMP client): its writer streams an image into the MCU's upload slot
// frame by frame, skipping what the MCU reports it holds, and stops with ErrMCUBehind when
// the MCU lost its upload. Nothing is read back: the MCU checks the image's SHA-256.
//
// Which bank is active comes from the kernel command line (/proc/cmdline, or the file the
// config's cmdline_file names: a key such as adu.slot=B, or root= naming one slot's device,
// PARTUUID, PARTLABEL or UBI volume) or from the bootloader state (Primary, when nothing is
// pending, asked through BootState), as configured. The active bank is never opened for
// writing: Layout.Prepare, which resolves a slot once for a write and measures its capacity,
// refuses every slot of the active bank and every shared slot, and every target that
// resolves to the same device as (or a whole disk containing) one of them, with
// ErrActiveSlot; the Target it returns opens the writer. Layout.OpenReader reads any slot,
// the active bank's too, with its storage opened read-only.
//
// # Writers
//
// A Writer streams exactly the announced number of bytes into a slot. It is built from small
// layers: a size limit (ErrTooLarge, counting NAND bad blocks and the configured reserve),
// erase-block buffering, a read-compare that skips erase and program of blocks whose content
// is already identical, bad-block skipping on NAND (a logical block maps to the next good
// physical block; a block whose erase or program fails is marked bad and the write moves on,
// within the reserve), periodic sync (at each sync interval when the caller keeps resume
// cursors; otherwise once, at Finish), and read-back: flash blocks are read back right after
// they are programmed, and Writer.Verify reads the whole slot back (streaming) against an
// expected stream; Writer.ReadAt lets a format check what was written its own way (an aduimg
// header's chunk hashes: image.Header.VerifyAt).
//
// Resuming: at every sync point that falls on an erase-block and image-chunk boundary the
// writer produces a Cursor (JSON-marshalable) that a caller persists (WithCursorFunc). OpenWriter with that
// cursor continues from it; the caller then feeds the payload from Writer.Cursor().Offset on
// (for an aduimg image: from chunk Cursor().Chunk, e.g. with image.NewChunkReader). A UBI
// volume cannot resume inside a volume update: its writer always restarts at offset 0.
//
// Hardware sits behind the small interfaces Flash (the method set of *mtd.Device, also
// satisfied by *mtdsim.Flash), BlockDevice (*os.File, *mtdsim.Block) and Volume
// (*mtd.Volume).
package slots
