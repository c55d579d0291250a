//go:build linux

package mtd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

func ioctl(f *os.File, req uint, arg unsafe.Pointer) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(arg))
	if e != 0 {
		return r, e
	}
	return r, nil
}

func typeFromKernel(t uint8) Type {
	switch t {
	case unix.MTD_ABSENT:
		return TypeAbsent
	case unix.MTD_RAM:
		return TypeRAM
	case unix.MTD_ROM:
		return TypeROM
	case unix.MTD_NORFLASH:
		return TypeNOR
	case unix.MTD_NANDFLASH:
		return TypeNAND
	case unix.MTD_DATAFLASH:
		return TypeDataFlash
	case unix.MTD_UBIVOLUME:
		return TypeUBIVolume
	case unix.MTD_MLCNANDFLASH:
		return TypeMLCNAND
	}
	return Type(t)
}

// Open opens an MTD character device (/dev/mtdN or /dev/mtdNro) for reading and writing,
// or read-only (Info.Writable false) when the device or the caller's rights refuse
// writing. Geometry comes from MEMGETINFO; name, sub-page size and sizes above 4 GiB come
// from p's sysfs tree when it has the device. /dev/mtdblockN and other block devices are
// refused with ErrBlockEmulation.
func (p Paths) Open(path string) (*Device, error) { return p.open(path, false) }

// OpenReadOnly opens an MTD character device as Open does, but for reading only, whatever
// the rights: Info.Writable is false and writes, erases and bad-block marks fail.
func (p Paths) OpenReadOnly(path string) (*Device, error) { return p.open(path, true) }

func (p Paths) open(path string, readOnly bool) (*Device, error) {
	n, err := mtdNumber(path)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		if n2, err := mtdNumber(real); err != nil {
			return nil, err
		} else if n < 0 {
			n = n2
		}
	}
	if st, err := os.Stat(path); err == nil && st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0 {
		return nil, fmt.Errorf("mtd: %s is a block device: %w", path, ErrBlockEmulation)
	}
	writable := !readOnly
	var f *os.File
	if writable {
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if !writable || errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
		writable = false
		f, err = os.OpenFile(path, os.O_RDONLY, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("mtd: open: %w", err)
	}
	var mi unix.MtdInfo
	if _, err := ioctl(f, unix.MEMGETINFO, unsafe.Pointer(&mi)); err != nil {
		f.Close()
		return nil, fmt.Errorf("mtd: %s is not an MTD character device (MEMGETINFO: %w)", path, err)
	}
	info := Info{
		Type:      typeFromKernel(mi.Type),
		Size:      int64(mi.Size),
		EraseSize: int(mi.Erasesize),
		WriteSize: int(mi.Writesize),
		OOBSize:   int(mi.Oobsize),
		Writable:  writable && mi.Flags&unix.MTD_WRITEABLE != 0,
	}
	if n >= 0 {
		if si, err := p.InfoFromSysfs(n); err == nil && si.EraseSize == info.EraseSize && si.WriteSize == info.WriteSize {
			info.Name = si.Name
			info.SubpageSize = si.SubpageSize
			if si.Size > info.Size {
				info.Size = si.Size // MEMGETINFO's size is 32-bit
			}
		}
	}
	if info.SubpageSize == 0 {
		info.SubpageSize = info.WriteSize
	}
	if info.WriteSize <= 0 || info.EraseSize <= 0 {
		f.Close()
		return nil, fmt.Errorf("mtd: %s: implausible geometry (erase %d, write %d): %w", path, info.EraseSize, info.WriteSize, ErrUnsupported)
	}
	return &Device{f: f, path: path, info: info}, nil
}

func (d *Device) isBad(off int64) (bool, error) {
	if !d.info.Type.HasBadBlocks() {
		return false, nil
	}
	v := off
	r, err := ioctl(d.f, unix.MEMGETBADBLOCK, unsafe.Pointer(&v))
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return false, nil
		}
		return false, &BlockError{Op: "getbadblock", Off: off, Err: err}
	}
	return r > 0, nil
}

// IsBad reports whether the erase block holding off is bad (MEMGETBADBLOCK). NOR and RAM
// devices have no bad blocks: false.
func (d *Device) IsBad(off int64) (bool, error) {
	if d.f == nil {
		return false, ErrClosed
	}
	if err := CheckRange(off, 0, d.info.Size-1); err != nil {
		return false, err
	}
	return d.isBad(AlignDown(off, int64(d.info.EraseSize)))
}

// MarkBad marks the erase block holding off bad (MEMSETBADBLOCK). Devices without bad
// block support give ErrUnsupported.
func (d *Device) MarkBad(off int64) error {
	if d.f == nil {
		return ErrClosed
	}
	if err := CheckRange(off, 0, d.info.Size-1); err != nil {
		return err
	}
	if !d.info.Type.HasBadBlocks() {
		return fmt.Errorf("mtd: mark bad on %s flash: %w", d.info.Type, ErrUnsupported)
	}
	if !d.info.Writable {
		return fmt.Errorf("mtd: mark bad %s: %w", d.path, ErrReadOnly)
	}
	v := AlignDown(off, int64(d.info.EraseSize))
	if _, err := ioctl(d.f, unix.MEMSETBADBLOCK, unsafe.Pointer(&v)); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = errors.Join(ErrUnsupported, err)
		}
		return &BlockError{Op: "markbad", Off: AlignDown(off, int64(d.info.EraseSize)), Err: err}
	}
	return nil
}

// WriteAt programs p at off. On NAND (WriteSize > 1) offset and length must be whole
// pages (ErrUnaligned). Erase blocks marked bad are refused with ErrBadBlock (the kernel
// itself would accept the write). WriteAt does not check that the range is erased.
// A failed program (EIO) wraps ErrIO in a *BlockError.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if d.f == nil {
		return 0, ErrClosed
	}
	if !d.info.Writable {
		return 0, fmt.Errorf("mtd: write %s: %w", d.path, ErrReadOnly)
	}
	if err := d.info.CheckWrite(off, len(p)); err != nil {
		return 0, err
	}
	for blk := range BlockRange(off, int64(len(p)), d.info.EraseSize) {
		bad, err := d.isBad(blk)
		if err != nil {
			return 0, err
		}
		if bad {
			return 0, &BlockError{Op: "write", Off: blk, Err: ErrBadBlock}
		}
	}
	n, err := d.f.WriteAt(p, off)
	if err != nil {
		e := err
		if errors.Is(err, unix.EIO) {
			e = errors.Join(ErrIO, err)
		}
		return n, &BlockError{Op: "write", Off: AlignDown(off+int64(n), int64(d.info.EraseSize)), Err: e}
	}
	return n, nil
}

// Erase erases [off, off+length), which must be whole erase blocks, one block at a time
// with MEMERASE64. It stops at the first bad block (ErrBadBlock) or failed erase (ErrIO),
// both as a *BlockError naming the block.
func (d *Device) Erase(off, length int64) error {
	if d.f == nil {
		return ErrClosed
	}
	if !d.info.Writable {
		return fmt.Errorf("mtd: erase %s: %w", d.path, ErrReadOnly)
	}
	if err := d.info.CheckErase(off, length); err != nil {
		return err
	}
	for blk := range BlockRange(off, length, d.info.EraseSize) {
		bad, err := d.isBad(blk)
		if err != nil {
			return err
		}
		if bad {
			return &BlockError{Op: "erase", Off: blk, Err: ErrBadBlock}
		}
		ei := unix.EraseInfo64{Start: uint64(blk), Length: uint64(d.info.EraseSize)}
		if _, err := ioctl(d.f, unix.MEMERASE64, unsafe.Pointer(&ei)); err != nil {
			if errors.Is(err, unix.EIO) {
				err = errors.Join(ErrIO, err)
			}
			return &BlockError{Op: "erase", Off: blk, Err: err}
		}
	}
	return nil
}

// errKernelNotSupp is the kernel-internal ENOTSUPP (524, include/linux/errno.h) that
// MEMUNLOCK returns to user space on NAND, which has no locking; x/sys/unix does not name it
// because it is not part of the user-space ABI. Found by the nandsim test under QEMU.
const errKernelNotSupp = unix.Errno(524)

// Unlock removes write protection from [off, off+length) (MEMUNLOCK). Devices without
// locking (EOPNOTSUPP, or ENOTSUPP from NAND drivers) succeed.
func (d *Device) Unlock(off, length int64) error {
	if d.f == nil {
		return ErrClosed
	}
	if err := CheckRange(off, length, d.info.Size); err != nil {
		return err
	}
	if off > 1<<32-1 || length > 1<<32-1 {
		return fmt.Errorf("mtd: unlock %#x+%#x: MEMUNLOCK takes 32-bit ranges: %w", off, length, ErrOutOfRange)
	}
	ei := unix.EraseInfo{Start: uint32(off), Length: uint32(length)}
	if _, err := ioctl(d.f, unix.MEMUNLOCK, unsafe.Pointer(&ei)); err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, errKernelNotSupp) {
		return fmt.Errorf("mtd: unlock %s %#x+%#x: %w", d.path, off, length, err)
	}
	return nil
}

// Sync flushes the device. mtdchar writes and erases are synchronous in the kernel, so
// an fsync the driver does not implement (EINVAL, EOPNOTSUPP) counts as success.
func (d *Device) Sync() error {
	if d.f == nil {
		return ErrClosed
	}
	if err := d.f.Sync(); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("mtd: sync %s: %w", d.path, err)
	}
	return nil
}

// Update starts an atomic volume update (UBI_IOCVOLUP) announcing exactly size bytes,
// and returns a writer that streams them. Writing more than size bytes, or closing after
// fewer, gives ErrUpdateSize; an interrupted update leaves the volume marked corrupted by
// the kernel until it is updated again. size may not exceed ReservedSize.
func (v *Volume) Update(size int64) (_ io.WriteCloser, err error) {
	if size < 0 || size > v.ReservedSize() {
		return nil, fmt.Errorf("mtd: UBI volume %q: update of %d bytes, capacity %d: %w", v.Name, size, v.ReservedSize(), ErrOutOfRange)
	}
	f, err := os.OpenFile(v.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("mtd: UBI volume %q: %w", v.Name, err)
	}
	n := size
	if _, err := ioctl(f, unix.UBI_IOCVOLUP, unsafe.Pointer(&n)); err != nil {
		f.Close()
		return nil, fmt.Errorf("mtd: UBI volume %q: UBI_IOCVOLUP %d: %w", v.Name, size, err)
	}
	return &volWriter{w: f, name: v.Name, size: size}, nil
}
