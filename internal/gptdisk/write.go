package gptdisk

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"

	"github.com/u-root/u-root/pkg/mount/gpt"
)

// LinuxFilesystem is the partition type GUID of a Linux file system (sgdisk's 8300).
const LinuxFilesystem = "0fc63daf-8483-4772-8e79-3d69d8477de4"

// Write writes a protective MBR and a primary and backup GUID partition table with room for
// entries partition entries (at least len(parts)) onto a disk of blocks 512-byte blocks,
// with u-root's GPT writer: for test disks and images made on a workstation. Each
// partition's Number is its entry (1-based); its Type defaults to LinuxFilesystem.
func Write(w io.WriterAt, blocks uint64, diskUUID string, entries int, parts []Partition) error {
	entryBlocks := (uint64(entries)*128 + BlockSize - 1) / BlockSize
	if entries < len(parts) || entries > gpt.MaxNPart || blocks < 3+2*entryBlocks {
		return fmt.Errorf("gptdisk: %d entries for %d partitions on %d blocks", entries, len(parts), blocks)
	}
	dg, err := parseGUID(diskUUID)
	if err != nil {
		return err
	}
	h := gpt.Header{Signature: gpt.Signature, Revision: gpt.Revision, HeaderSize: gpt.HeaderSize,
		CurrentLBA: 1, BackupLBA: blocks - 1, FirstLBA: 2 + entryBlocks, LastLBA: blocks - 2 - entryBlocks,
		DiskGUID: dg, PartStart: 2, NPart: uint32(entries), PartSize: 128}
	primary := &gpt.GPT{Header: h, Parts: make([]gpt.Part, entries)}
	for _, p := range parts {
		if p.Number < 1 || p.Number > entries || p.FirstLBA < h.FirstLBA || p.LastLBA > h.LastLBA || p.LastLBA < p.FirstLBA {
			return fmt.Errorf("gptdisk: partition %d (%q, blocks %d..%d) does not fit", p.Number, p.Name, p.FirstLBA, p.LastLBA)
		}
		e := gpt.Part{FirstLBA: p.FirstLBA, LastLBA: p.LastLBA}
		typ := p.Type
		if typ == "" {
			typ = LinuxFilesystem
		}
		if e.PartGUID, err = parseGUID(typ); err != nil {
			return err
		}
		if e.UniqueGUID, err = parseGUID(p.UUID); err != nil {
			return err
		}
		u := utf16.Encode([]rune(p.Name))
		if len(u) > len(e.Name)/2 {
			return fmt.Errorf("gptdisk: partition name %q is longer than 36 UTF-16 units", p.Name)
		}
		for i, c := range u {
			binary.LittleEndian.PutUint16(e.Name[2*i:], c)
		}
		primary.Parts[p.Number-1] = e
	}
	backup := &gpt.GPT{Header: h, Parts: primary.Parts}
	backup.CurrentLBA, backup.BackupLBA, backup.PartStart = blocks-1, 1, blocks-1-entryBlocks
	return gpt.Write(w, &gpt.PartitionTable{MasterBootRecord: protectiveMBR(blocks), Primary: primary, Backup: backup})
}

// protectiveMBR is the MBR of a GPT disk: one partition of type 0xEE over the disk.
func protectiveMBR(blocks uint64) *gpt.MBR {
	var m gpt.MBR
	e := m[446:462]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = 0xee
	e[5], e[6], e[7] = 0xff, 0xff, 0xff
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], uint32(min(blocks-1, 0xffffffff)))
	m[510], m[511] = 0x55, 0xaa
	return &m
}

// parseGUID parses the text form of a GUID (the first three groups little-endian on disk).
func parseGUID(s string) (gpt.GUID, error) {
	var g gpt.GUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || len(s) != 36 {
		return g, fmt.Errorf("gptdisk: %q is not a GUID", s)
	}
	g.L = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	g.W1 = uint16(b[4])<<8 | uint16(b[5])
	g.W2 = uint16(b[6])<<8 | uint16(b[7])
	copy(g.B[:], b[8:])
	return g, nil
}
