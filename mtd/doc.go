// Package mtd gives access to Linux raw flash: MTD character devices (/dev/mtdN) and UBI
// volumes (/dev/ubiX_Y), through the kernel's ioctls (golang.org/x/sys/unix) and sysfs.
//
// Scope: opening an MTD device by path, name or number (Open, OpenByName, OpenByNumber),
// its geometry (Info, from MEMGETINFO and /sys/class/mtd), reading, page-aligned writing,
// erasing (MEMERASE64), bad-block queries and marking (MEMGETBADBLOCK, MEMSETBADBLOCK),
// unlocking (MEMUNLOCK); finding a UBI volume by name (FindVolume) and replacing its
// contents with the kernel's atomic volume update (UBI_IOCVOLUP); and the small helpers
// every flash writer needs (IsErased, alignment, erase-block iteration). Slot logic, bad
// block skipping policy and journals belong to package slots; the behavioural simulator
// that upper layers test against is package mtd/mtdsim.
//
// Kernel behaviour a caller must know (verified under QEMU with nandsim and mtdram):
//   - write() into a bad block is not refused by the kernel. Device.WriteAt checks the
//     erase blocks it touches with MEMGETBADBLOCK and refuses them with ErrBadBlock, so a
//     writer sees the same answer from a real device and from mtdsim.
//   - NAND writes must be whole, page-aligned pages (Info.WriteSize); Device.WriteAt
//     refuses anything else with ErrUnaligned before the kernel answers EINVAL.
//   - NOR and RAM devices have no bad blocks: IsBad answers false and MarkBad returns
//     ErrUnsupported.
//   - A dynamic UBI volume reads back its whole reserved size, whatever was written;
//     only a static volume reports the written length (Volume.Size).
//   - /dev/mtdblockN is refused (ErrBlockEmulation): the block emulation hides erase and
//     bad-block handling and rewrites whole erase blocks behind the caller's back.
//
// Paths are injectable: the zero Paths uses /sys and /dev, tests use a fake tree. Every
// error wraps an exported sentinel (ErrBadBlock, ErrUnaligned, ErrOutOfRange, ...) for
// errors.Is; errors about one erase block are *BlockError so callers can find the offset.
// Linux-only code lives in _linux.go files; elsewhere the device operations return
// ErrUnsupported. The package never logs and keeps no package-level mutable state.
package mtd
