package ubootscript

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/aduflash/aduflash/internal/gptdisk"
	"github.com/aduflash/aduflash/slots"
)

// Storage kinds of a target, as U-Boot writes them.
const (
	kindMMC  = "mmc"  // mmc write at a block number (raw offset, GPT partition, eMMC boot partition)
	kindNAND = "nand" // nand erase.part + nand write of a named MTD partition (bad blocks skipped)
	kindUBI  = "ubi"  // ubi part + ubi write of a volume
	kindSF   = "sf"   // sf probe + sf update at an offset of SPI NOR
)

// target is where U-Boot writes a slot.
type target struct {
	slot     *slots.SlotConfig
	kind     string
	capacity int64 // bytes the slot takes; 0: unknown (U-Boot's own limits apply)

	// mmc
	dev, hwpart int
	block       uint64             // the slot's first 512-byte block on the device
	part        *gptdisk.Partition // the GPT partition holding it (the board's GPT is checked)
	partRef     string             // how `part` names it on the board: its name, or its number
	checkUUID   bool               // the slot names its partition by PARTUUID

	// nand: the MTD partition; ubi: the volume
	name string
	// sf
	offset int64
}

var (
	mmcDiskRe = regexp.MustCompile(`^/dev/mmcblk([0-9]+)$`)
	mmcPartRe = regexp.MustCompile(`^/dev/mmcblk[0-9]+p([0-9]+)$`)
	mmcBootRe = regexp.MustCompile(`^/dev/mmcblk[0-9]+boot([0-9])$`)
	mtdPathRe = regexp.MustCompile(`^/dev/mtd([0-9]+)$`)
)

// resolve finds where U-Boot writes slot s.
func (g *gen) resolve(s *slots.SlotConfig) (*target, error) {
	t := &target{slot: s, dev: g.b.UBoot.MMCDev}
	var err error
	switch {
	case s.Type == slots.TypeFile:
		err = fmt.Errorf("%w: slot %s is a file (%s) on the device's file system; U-Boot writes raw storage", ErrUnreachable, s.Name, s.Path)
	case s.Type == slots.TypeBlock:
		err = g.resolveBlock(t)
	case s.Type == slots.TypeEMMCBoot:
		err = g.resolveEMMCBoot(t)
	case s.Type == slots.TypeUBI:
		err = g.resolveUBI(t)
	case s.IsMTD():
		err = g.resolveMTD(t)
	default:
		err = fmt.Errorf("%w: slot %s has type %q", ErrUnreachable, s.Name, s.Type)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// resolveBlock places a block slot on the mmc device: in a GPT partition (by name, PARTUUID
// or the number of an mmcblkXpN path) or at a raw offset of the whole disk.
func (g *gen) resolveBlock(t *target) error {
	s := t.slot
	t.kind = kindMMC
	if s.Offset%gptdisk.BlockSize != 0 {
		return fmt.Errorf("%w: slot %s: offset %d is not a multiple of 512 (mmc write takes blocks)", ErrUnreachable, s.Name, s.Offset)
	}
	if mmcDiskRe.MatchString(s.Path) {
		t.block, t.capacity = uint64(s.Offset)/gptdisk.BlockSize, int64(s.Size)
		return nil
	}
	m := mmcPartRe.FindStringSubmatch(s.Path)
	if s.PartLabel == "" && s.PartUUID == "" && m == nil {
		return fmt.Errorf("%w: slot %s: U-Boot knows no name for %s (a block slot is an mmcblkN disk, an mmcblkNpM partition, a partlabel or a partuuid on uboot.mmc_dev)", ErrUnreachable, s.Name, s.Path)
	}
	var p gptdisk.Partition
	tab, err := g.gpt(s)
	if err != nil {
		return err
	}
	switch {
	case s.PartLabel != "":
		p, err = tab.ByName(s.PartLabel)
		t.partRef = s.PartLabel
	case s.PartUUID != "":
		p, err = tab.ByUUID(s.PartUUID)
		t.checkUUID = true
	default:
		n, _ := strconv.Atoi(m[1])
		p, err = tab.ByNumber(n)
		t.partRef = m[1]
	}
	if err != nil {
		return fmt.Errorf("slot %s: %s: %w", s.Name, g.b.GPTName, err)
	}
	if t.checkUUID {
		t.partRef = strconv.Itoa(p.Number)
	}
	t.part = &p
	t.block = p.FirstLBA + uint64(s.Offset)/gptdisk.BlockSize
	t.capacity = p.Size() - int64(s.Offset)
	if t.capacity <= 0 {
		return fmt.Errorf("%w: slot %s: offset %d is beyond partition %d (%d bytes)", ErrUnreachable, s.Name, s.Offset, p.Number, p.Size())
	}
	if s.Size > 0 {
		t.capacity = min(t.capacity, int64(s.Size))
	}
	return nil
}

// gpt returns the partition table slot s is placed by.
func (g *gen) gpt(s *slots.SlotConfig) (*gptdisk.Table, error) {
	if g.b.GPT == nil {
		what := s.Path
		if s.PartLabel != "" {
			what = "partition " + strconv.Quote(s.PartLabel)
		} else if s.PartUUID != "" {
			what = "PARTUUID " + s.PartUUID
		}
		return nil, fmt.Errorf("%w: slot %s is GPT %s: give the disk (its image, or the block device) so its place comes from the GPT", ErrNeedGPT, s.Name, what)
	}
	return g.b.GPT, nil
}

// resolveEMMCBoot places an eMMC boot partition slot: hardware partition N+1 of the mmc
// device, at the slot's offset.
func (g *gen) resolveEMMCBoot(t *target) error {
	s := t.slot
	m := mmcBootRe.FindStringSubmatch(s.Path)
	if m == nil {
		return fmt.Errorf("%w: slot %s: %s is not an eMMC boot partition /dev/mmcblkNbootM", ErrUnreachable, s.Name, s.Path)
	}
	if s.Offset%gptdisk.BlockSize != 0 {
		return fmt.Errorf("%w: slot %s: offset %d is not a multiple of 512 (mmc write takes blocks)", ErrUnreachable, s.Name, s.Offset)
	}
	n, _ := strconv.Atoi(m[1])
	t.kind, t.hwpart = kindMMC, n+1
	t.block, t.capacity = uint64(s.Offset)/gptdisk.BlockSize, int64(s.Size)
	return nil
}

// resolveUBI places a UBI volume slot: a volume of the UBI on uboot.ubi_part.
func (g *gen) resolveUBI(t *target) error {
	if g.b.UBoot.UBIPart == "" {
		return fmt.Errorf("%w: slot %s is UBI volume %q: set uboot.ubi_part (the MTD partition U-Boot attaches UBI from)", ErrUnreachable, t.slot.Name, t.slot.UBIVolume)
	}
	t.kind, t.name, t.capacity = kindUBI, t.slot.UBIVolume, int64(t.slot.Size)
	return nil
}

// resolveMTD places a raw MTD slot: a NAND partition U-Boot writes by name, or an offset of
// SPI NOR.
func (g *gen) resolveMTD(t *target) error {
	s := t.slot
	number := -1
	if n, err := strconv.Atoi(s.MTD); err == nil {
		number = n
	} else if m := mtdPathRe.FindStringSubmatch(s.Path); m != nil {
		number, _ = strconv.Atoi(m[1])
	}
	id, part, found := g.b.UBoot.mtdPart(s.MTD, number)
	if !found {
		if g.b.UBoot.MTDParts == "" && s.Type == slots.TypeNAND && number < 0 {
			// The board's U-Boot defines its NAND partitions itself.
			t.kind, t.name, t.capacity = kindNAND, s.MTD, g.reserved(s, int64(s.Size))
			return g.nandAtStart(t)
		}
		return fmt.Errorf("%w: slot %s: MTD %q is not in uboot.mtdparts %q (U-Boot needs the partition's device and place)", ErrUnreachable, s.Name, s.MTD+s.Path, g.b.UBoot.MTDParts)
	}
	capacity := int64(s.Size)
	if part.Size > 0 {
		capacity = part.Size - int64(s.Offset)
		if s.Size > 0 {
			capacity = min(capacity, int64(s.Size))
		}
	}
	switch {
	case id.Type == "nand" && s.Type != slots.TypeNOR:
		t.kind, t.name, t.capacity = kindNAND, part.Name, g.reserved(s, capacity)
		return g.nandAtStart(t)
	case id.Type == "nor" && s.Type != slots.TypeNAND:
		t.kind, t.offset, t.capacity = kindSF, part.Offset+int64(s.Offset), capacity
		return nil
	}
	return fmt.Errorf("%w: slot %s is %s, on U-Boot device %s%d (the script writes nand and SPI NOR devices)", ErrUnreachable, s.Name, s.Type, id.Type, id.Number)
}

// nandAtStart refuses a NAND slot inside its partition: U-Boot confines bad-block skipping
// to a partition only when it writes the partition by name, from its start.
func (g *gen) nandAtStart(t *target) error {
	if t.slot.Offset != 0 {
		return fmt.Errorf("%w: slot %s starts at offset %d of MTD partition %s: U-Boot's nand write keeps bad-block skipping inside a partition only from its start (make the slot its own partition)", ErrUnreachable, t.slot.Name, t.slot.Offset, t.name)
	}
	return nil
}

// reserved is a NAND slot's capacity less its bad-block reserve (when its erase size is
// known), as `aduimport check-fit` counts it.
func (g *gen) reserved(s *slots.SlotConfig, capacity int64) int64 {
	if capacity <= 0 || s.EraseSize <= 0 {
		return capacity
	}
	return max(capacity-int64(s.Reserve(g.b.Slots))*int64(s.EraseSize), 1)
}
