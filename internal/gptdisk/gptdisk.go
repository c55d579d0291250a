// Package gptdisk reads the GUID partition table of a disk image or a block device with
// u-root's GPT reader (github.com/u-root/u-root/pkg/mount/gpt): each partition's name
// (PARTLABEL), unique GUID (PARTUUID), number and extent, so that an offset comes from the
// disk itself and is never typed by hand.
//
// The primary and the backup table must both be valid and agree (u-root's gpt.New checks
// their CRCs and compares them), as U-Boot and Linux would otherwise see different tables.
// Before u-root reads the entry arrays, Read checks what sizes them in both headers (the
// entry size and count), so a hostile image cannot make it allocate gigabytes.
package gptdisk

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"

	"github.com/u-root/u-root/pkg/mount/gpt"

	"github.com/aduflash/aduflash/internal/errkind"
)

// BlockSize is the logical block size of the tables this package reads (LBA unit).
const BlockSize = gpt.BlockSize

// ErrNoGPT is returned (wrapped, with what is wrong) when the disk has no valid GUID partition
// table: no signature, a bad CRC, primary and backup tables that disagree, or a header that
// sizes its entries beyond what GPT allows.
var ErrNoGPT = errkind.New(errkind.Input, "gptdisk: no valid GUID partition table")

// maxLBA bounds block numbers so that byte offsets fit an int64 with room to add.
const maxLBA = 1 << 53

// Partition is one used entry of the table.
type Partition struct {
	Number   int    // 1-based position in the entry array: Linux's pN, U-Boot's partition number
	Name     string // the partition name (PARTLABEL)
	UUID     string // the unique partition GUID (PARTUUID), lower case
	Type     string // the partition type GUID, lower case
	FirstLBA uint64 // first block
	LastLBA  uint64 // last block (inclusive)
}

// Offset returns where the partition starts, in bytes from the start of the disk.
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * BlockSize }

// Size returns the partition's size in bytes.
func (p Partition) Size() int64 { return int64(p.LastLBA-p.FirstLBA+1) * BlockSize }

// Blocks returns the partition's size in blocks.
func (p Partition) Blocks() uint64 { return p.LastLBA - p.FirstLBA + 1 }

// Table is a disk's partition table.
type Table struct {
	DiskUUID   string
	Partitions []Partition // used entries, in entry order
}

// Read reads and checks the partition table of disk (an image file or a block device).
func Read(disk io.ReaderAt) (*Table, error) {
	primary, err := checkHeader(disk, gpt.HeaderOff, "primary")
	if err != nil {
		return nil, err
	}
	if primary.BackupLBA >= maxLBA {
		return nil, fmt.Errorf("%w: the backup table's block %d is beyond any disk", ErrNoGPT, primary.BackupLBA)
	}
	if _, err := checkHeader(disk, int64(primary.BackupLBA)*BlockSize, "backup"); err != nil {
		return nil, err
	}
	pt, err := gpt.New(disk)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoGPT, err)
	}
	if pt.Primary == nil || pt.Backup == nil {
		return nil, fmt.Errorf("%w: a table could not be read", ErrNoGPT)
	}
	t := &Table{DiskUUID: strings.ToLower(pt.Primary.DiskGUID.String())}
	for i, e := range pt.Primary.Parts {
		if e.PartGUID == (gpt.GUID{}) {
			continue // unused entry
		}
		if e.LastLBA < e.FirstLBA || e.LastLBA >= maxLBA {
			return nil, fmt.Errorf("%w: entry %d spans blocks %d..%d", ErrNoGPT, i+1, e.FirstLBA, e.LastLBA)
		}
		t.Partitions = append(t.Partitions, Partition{
			Number:   i + 1,
			Name:     name(e.Name),
			UUID:     strings.ToLower(e.UniqueGUID.String()),
			Type:     strings.ToLower(e.PartGUID.String()),
			FirstLBA: e.FirstLBA,
			LastLBA:  e.LastLBA,
		})
	}
	return t, nil
}

// checkHeader reads the header at off and refuses entry arrays that GPT does not allow (u-root
// would allocate whatever they say before it checks a CRC).
func checkHeader(disk io.ReaderAt, off int64, which string) (*gpt.Header, error) {
	var h gpt.Header
	if err := binary.Read(io.NewSectionReader(disk, off, gpt.HeaderSize), binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("%w: %s header at byte %d: %v", ErrNoGPT, which, off, err)
	}
	switch {
	case h.Signature != gpt.Signature:
		return nil, fmt.Errorf("%w: %s header at byte %d has no \"EFI PART\" signature", ErrNoGPT, which, off)
	case h.PartSize < 128 || h.PartSize > 4096 || h.PartSize%8 != 0:
		return nil, fmt.Errorf("%w: %s header: entry size %d (GPT: 128 × 2^n)", ErrNoGPT, which, h.PartSize)
	case h.NPart > gpt.MaxNPart:
		return nil, fmt.Errorf("%w: %s header: %d entries (at most %d)", ErrNoGPT, which, h.NPart, gpt.MaxNPart)
	case h.PartStart >= maxLBA:
		return nil, fmt.Errorf("%w: %s header: entries at block %d", ErrNoGPT, which, h.PartStart)
	}
	return &h, nil
}

// name decodes a UTF-16LE partition name up to its first NUL.
func name(n gpt.PartName) string {
	u := make([]uint16, 0, len(n)/2)
	for i := 0; i+1 < len(n); i += 2 {
		c := binary.LittleEndian.Uint16(n[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// ByName returns the partition called name (PARTLABEL); names are compared exactly, as
// /dev/disk/by-partlabel and U-Boot's part command do. Two partitions of that name are an
// error: a label that names two places names none.
func (t *Table) ByName(name string) (Partition, error) {
	return t.find("name", name, func(p Partition) bool { return p.Name == name })
}

// ByUUID returns the partition whose unique GUID is uuid (any case).
func (t *Table) ByUUID(uuid string) (Partition, error) {
	uuid = strings.ToLower(uuid)
	return t.find("PARTUUID", uuid, func(p Partition) bool { return p.UUID == uuid })
}

// ByNumber returns partition n (1-based).
func (t *Table) ByNumber(n int) (Partition, error) {
	return t.find("number", fmt.Sprint(n), func(p Partition) bool { return p.Number == n })
}

// ErrNoPartition is returned (wrapped) when the table has no partition (or more than one) of
// the name, GUID or number asked for.
var ErrNoPartition = errkind.New(errkind.Input, "gptdisk: no such partition")

func (t *Table) find(what, v string, match func(Partition) bool) (Partition, error) {
	var found []Partition
	for _, p := range t.Partitions {
		if match(p) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Partition{}, fmt.Errorf("%w: %s %q (the disk has %s)", ErrNoPartition, what, v, t.names())
	}
	return Partition{}, fmt.Errorf("%w: %s %q names partitions %d and %d", ErrNoPartition, what, v, found[0].Number, found[1].Number)
}

func (t *Table) names() string {
	if len(t.Partitions) == 0 {
		return "no partitions"
	}
	var s []string
	for _, p := range t.Partitions {
		s = append(s, fmt.Sprintf("%d %q", p.Number, p.Name))
	}
	return strings.Join(s, ", ")
}
