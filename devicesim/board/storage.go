package board

import (
	"fmt"
	"io"
	"strings"

	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/internal/powersim"
	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/slots"
)

// Storage is what a board keeps its banks and its U-Boot environment on.
type Storage string

// The storages a board can have.
const (
	NAND  Storage = "nand"  // raw NAND: page programs, factory and grown bad blocks (the default)
	NOR   Storage = "nor"   // raw SPI NOR: programs clear bits, 256-byte program pages
	Block Storage = "block" // a block device (eMMC, SD card): sector writes
)

// Geometry that does not come from Options.
const (
	norProgramUnit = 256    // a SPI NOR page program
	sectorSize     = 512    // block-device sector
	envSize        = 0x1000 // one copy of the redundant U-Boot environment
	envBlocks      = 4      // raw flash blocks holding the two copies (each may skip one bad block)
)

// factoryEnv is the environment the board leaves the factory with; U-Boot falls back to it
// (its built-in default) when no copy is valid.
var factoryEnv = []ubootenv.Var{{Name: "adu_slot", Value: "A"}, {Name: "bootcmd", Value: "run adu_boot"}}

// medium is one simulated storage: a raw flash or a block device.
type medium struct {
	flash *mtdsim.Flash
	disk  *mtdsim.Block
}

// newMedium makes a medium of size bytes of the board's storage; eraseSize overrides the
// erase block (0: Options.EraseSize).
func (b *Board) newMedium(name string, size, eraseSize int) (medium, error) {
	opts := []mtdsim.Option{mtdsim.WithSeed(b.o.Seed*1000003 + uint64(len(b.media))), mtdsim.WithName(name)}
	if eraseSize == 0 {
		eraseSize = b.o.EraseSize
	}
	var m medium
	var err error
	switch b.o.Storage {
	case NOR:
		m.flash, err = mtdsim.NewNOR(size, eraseSize, opts...)
	case Block:
		m.disk, err = mtdsim.NewBlock(size, sectorSize, opts...)
	default:
		m.flash, err = mtdsim.NewNAND(size, eraseSize, b.o.PageSize, append(opts, mtdsim.WithFactoryBad(b.o.FactoryBad[name]...))...)
	}
	if err != nil {
		return m, fmt.Errorf("board: %s: %w", name, err)
	}
	for _, b := range b.o.GoesBad[name] {
		if m.flash == nil || !m.flash.Info().Type.IsNAND() {
			return m, fmt.Errorf("board: %s: only NAND blocks go bad", name)
		}
		if err := m.flash.FailEraseAt(b); err != nil {
			return m, fmt.Errorf("board: %s: %w", name, err)
		}
	}
	b.media[name] = m
	return m, nil
}

// flashOf is the raw flash medium name, behind the power switch when p is set.
func (b *Board) flashOf(name string, p *powersim.Power) envFlash {
	if p == nil {
		return b.media[name].flash
	}
	return powersim.Flash{Flash: b.media[name].flash, P: p, Name: name, Unit: norProgramUnit}
}

// diskOf is the block-device medium name, behind the power switch when p is set.
func (b *Board) diskOf(name string, p *powersim.Power) slots.BlockDevice {
	if p == nil {
		return b.media[name].disk
	}
	return powersim.Block{Block: b.media[name].disk, P: p, Name: name}
}

// envFlash is raw flash as both the slot writers and the environment use it.
type envFlash interface {
	slots.Flash
	Unlock(off, length int64) error
}

// load puts data at the start of a medium as a slot writer lays it out (NAND: in the good
// blocks), without counting operations: the factory's programming.
func (m medium) load(data []byte) error {
	if m.disk != nil {
		return m.disk.Load(data)
	}
	i := m.flash.Info()
	raw := m.flash.Bytes()
	for b := 0; b < i.Blocks() && len(data) > 0; b++ {
		if bad, _ := m.flash.IsBad(i.BlockOffset(b)); bad {
			continue
		}
		data = data[copy(raw[i.BlockOffset(b):i.BlockOffset(b+1)], data):]
	}
	if len(data) > 0 {
		return fmt.Errorf("board: %d bytes do not fit in %s", len(data), i.Name)
	}
	return m.flash.Load(raw)
}

// read returns up to n bytes from the start of a medium as a slot writer lays them out (NAND:
// bad blocks skipped), whatever the power.
func (m medium) read(n int) []byte {
	if m.disk != nil {
		return m.disk.Bytes()[:min(n, int(m.disk.Size()))]
	}
	i := m.flash.Info()
	raw := m.flash.Bytes()
	var out []byte
	for b := 0; b < i.Blocks() && len(out) < n; b++ {
		if bad, _ := m.flash.IsBad(i.BlockOffset(b)); bad {
			continue
		}
		blk := raw[i.BlockOffset(b):i.BlockOffset(b+1)]
		out = append(out, blk[:min(len(blk), n-len(out))]...)
	}
	return out
}

// newEnv makes the medium of the U-Boot environment, writes the factory environment into
// both copies, and returns the environment behind the power switch and a view for
// inspection that ignores it.
func (b *Board) newEnv() (live, inspect *ubootenv.Env, err error) {
	size, erase := envBlocks*b.o.EraseSize, 0
	switch b.o.Storage {
	case NOR:
		size, erase = envBlocks*envSize, envSize // 4 KiB sectors, as SPI NOR boards keep their env
	case Block:
		size = 2 * envSize
	}
	m, err := b.newMedium("env", size, erase)
	if err != nil {
		return nil, nil, err
	}
	open := func(p *powersim.Power) (*ubootenv.Env, error) {
		st, err := b.envStorages(m, p)
		if err != nil {
			return nil, err
		}
		return ubootenv.New(ubootenv.Options{Format: ubootenv.Format{Size: envSize}, Defaults: factoryEnv, HasDefaults: true}, st...)
	}
	factory, err := open(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("board: environment: %w", err)
	}
	for range 2 { // both copies
		if err := factory.Update(map[string]string{"adu_slot": "A"}, nil); err != nil {
			return nil, nil, fmt.Errorf("board: factory environment: %w", err)
		}
	}
	if live, err = open(b.power); err != nil {
		return nil, nil, fmt.Errorf("board: environment: %w", err)
	}
	return live, factory, nil
}

// envStorages are the two copies of the environment on medium m (behind p when set): on
// raw flash as fw_env.config places them (NAND: each in the first good one of two erase
// blocks), on a block device one after the other.
func (b *Board) envStorages(m medium, p *powersim.Power) ([]ubootenv.Storage, error) {
	if m.disk != nil {
		dev := b.diskOf("env", p)
		return []ubootenv.Storage{&diskEnv{dev: dev, off: 0}, &diskEnv{dev: dev, off: envSize}}, nil
	}
	f := b.flashOf("env", p)
	i := f.Info()
	geo := ubootenv.MTDGeometry{NAND: i.Type.IsNAND(), Size: i.Size, EraseSize: i.EraseSize, WriteSize: i.WriteSize}
	var st []ubootenv.Storage
	for c := range 2 {
		s, err := ubootenv.NewMTDStorage(fmt.Sprintf("env%d", c+1), f, geo, int64(c*envBlocks/2*i.EraseSize), 0, envBlocks/2, true)
		if err != nil {
			return nil, err
		}
		st = append(st, s)
	}
	return st, nil
}

// diskEnv is one environment copy on a block device: written in place and synced, as U-Boot
// and libubootenv do on eMMC.
type diskEnv struct {
	dev slots.BlockDevice
	off int64
}

func (e *diskEnv) ReadCopy(p []byte) error {
	_, err := e.dev.ReadAt(p, e.off)
	if err == io.EOF {
		err = nil
	}
	return err
}

func (e *diskEnv) WriteCopy(p []byte) error {
	if _, err := e.dev.WriteAt(p, e.off); err != nil {
		return err
	}
	return e.dev.Sync()
}

// slotsConfig is the [slots] section of the board: banks A and B, each with a slot of every
// class (a shared class: one slot), and the spare policies of the classes.
func (b *Board) slotsConfig() string {
	var w strings.Builder
	fmt.Fprintf(&w, "[slots]\nactive = \"cmdline\"\nsync_interval = %d\nreserve_blocks = %d\n", b.o.SyncInterval, b.o.ReserveBlocks)
	for _, c := range b.o.classes() {
		for _, bank := range c.banks() {
			name := strings.ToLower(strings.TrimSuffix(c.Name+"_"+bank, "_"))
			fmt.Fprintf(&w, "[[slots.slot]]\nclass = %q\n", c.Name)
			if bank != "" {
				fmt.Fprintf(&w, "bank = %q\n", bank)
			}
			switch b.o.Storage {
			case Block:
				fmt.Fprintf(&w, "type = \"block\"\npath = \"/dev/mmcblk0p%s\"\n", name)
			default:
				fmt.Fprintf(&w, "type = %q\nmtd = %q\n", b.o.Storage, name)
			}
		}
	}
	for _, c := range b.o.Classes {
		if c.Spare != "" {
			fmt.Fprintf(&w, "[slots.class.%s]\nspare = %q\n", c.Name, c.Spare)
		}
	}
	for _, m := range b.o.MCUs {
		fmt.Fprintf(&w, "[[slots.mcu]]\nname = %q\nclass = %q\ntransport = \"udp\"\naddress = %q\nslot_size = %d\n", m.Name, m.Class, m.Address, m.SlotSize)
		if m.BootTimeout > 0 {
			fmt.Fprintf(&w, "boot_timeout = %q\n", m.BootTimeout)
		}
		if len(m.HealthCommand) > 0 {
			fmt.Fprintf(&w, "health_command = [%q]\n", m.HealthCommand[0])
		}
	}
	return w.String()
}
