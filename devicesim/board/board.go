// Package board is the simulated board of package devicesim without its software: two
// banks A and B on simulated storage (raw NAND with bad blocks, SPI NOR, or a block device,
// from package mtd/mtdsim), each with a rootfs slot and slots of further classes; a redundant
// U-Boot environment on the same storage, with the aduflash variable preset, whose bootcount
// and rollback are played by bootloader/sim; the kernel command line that names the bank
// U-Boot started; the [slots] configuration of the banks; a simulated file system for the
// agent's state; and one power switch in front of every write.
//
// Package devicesim runs the update agent on a board through its life cycle; the agent's own
// tests build their agents on one (Layout, Bootloader, FS). The package keeps no
// package-level state.
package board

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/internal/powersim"
	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/slots"
)

// Options describe a board.
type Options struct {
	// Dir holds the kernel command line (required).
	Dir string
	// Storage of the banks and the environment (default NAND).
	Storage Storage
	// Slot geometry: SlotSize bytes per rootfs slot (default 16 MiB). Raw flash has erase
	// blocks of EraseSize (default 128 KiB); NAND pages of PageSize (default 2 KiB), NOR
	// programs 256-byte pages; a block device has 512-byte sectors.
	SlotSize, EraseSize, PageSize int
	// Factory is what bank A's rootfs slot holds at first power-on.
	Factory []byte
	// Classes are the slot classes of each bank besides rootfs.
	Classes []Class
	// FactoryBad lists the NAND erase blocks that are bad from the factory, per medium: a
	// slot ("B/rootfs"; a shared slot by its class alone) or "env". GoesBad lists erase
	// blocks, per slot, whose erases fail from the first on: they go bad during an update.
	// ReserveBlocks is the bad-block reserve of each NAND slot.
	FactoryBad    map[string][]int
	GoesBad       map[string][]int
	ReserveBlocks int
	// SyncInterval is how many bytes the agent writes between syncs and resume points
	// (default 1 MiB).
	SyncInterval int
	// Seed seeds what a power cut tears and loses (default 1).
	Seed uint64
	// MCUs are MCUs attached to the board, in its [slots] configuration (over UDP: Name,
	// Class, Address, SlotSize, BootTimeout, the first word of HealthCommand).
	MCUs []slots.MCUConfig
}

// Class is a slot class of the board besides rootfs.
type Class struct {
	Name string
	// Size of each of its slots (default: Factory's length rounded up to erase blocks, plus
	// one block).
	Size int
	// Factory is what bank A's slot (a shared slot) holds at first power-on.
	Factory []byte
	// Spare is the class's spare policy in [slots.class.NAME] ("": the default, copy).
	// "shared" gives the board one slot of the class that no bank owns.
	Spare string
}

// Board is a simulated board.
type Board struct {
	o       Options
	power   *Power
	fs      *powersim.MemFS
	media   map[string]medium // by Name, and "env"
	env     *ubootenv.Env     // behind the power switch
	envView *ubootenv.Env     // the same, for inspection whatever the power
	boot    *sim.Device
	cfg     *slots.Config
	cmdline string

	mu      sync.Mutex
	running string // the bank the kernel runs from
	boots   int
}

// Name is the medium of a bank's slot of class: "B/rootfs"; a shared slot (no bank) by its
// class alone.
func Name(bank, class string) string {
	if bank == "" {
		return class
	}
	return bank + "/" + class
}

// New builds a board that has never booted.
func New(o Options) (*Board, error) {
	if o.Dir == "" {
		return nil, errors.New("board: Dir is required")
	}
	o.setDefaults()
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	b := &Board{o: o, power: powersim.New(powersim.WithSeed(o.Seed)), media: map[string]medium{}, cmdline: filepath.Join(o.Dir, "cmdline")}
	b.fs = powersim.NewMemFS(b.power)
	if err := b.build(); err != nil {
		return nil, err
	}
	return b, nil
}

func (o *Options) setDefaults() {
	if o.Storage == "" {
		o.Storage = NAND
	}
	if o.SlotSize == 0 {
		o.SlotSize = 16 << 20
	}
	if o.EraseSize == 0 {
		o.EraseSize = 128 << 10
	}
	if o.PageSize == 0 {
		o.PageSize = 2 << 10
	}
	o.Classes = append([]Class(nil), o.Classes...)
	for i, c := range o.Classes {
		if c.Size == 0 {
			o.Classes[i].Size = (len(c.Factory)/o.EraseSize + 2) * o.EraseSize
		}
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 1 << 20
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
}

// classes are the board's slot classes, rootfs last.
func (o *Options) classes() []Class {
	return append(o.Classes, Class{Name: "rootfs", Size: o.SlotSize, Factory: o.Factory})
}

// banks are the banks with a slot of class c: none for a shared class.
func (c Class) banks() []string {
	if c.Spare == "shared" {
		return []string{""}
	}
	return []string{"A", "B"}
}

// build makes the storage: the slots with their factory content, the environment, the
// slot configuration and U-Boot.
func (b *Board) build() error {
	for _, c := range b.o.classes() {
		if len(c.Factory) > c.Size {
			return fmt.Errorf("board: factory %s of %d bytes for a %d-byte slot", c.Name, len(c.Factory), c.Size)
		}
		for _, bank := range c.banks() {
			m, err := b.newMedium(Name(bank, c.Name), c.Size, 0)
			if err != nil {
				return err
			}
			if bank != "B" && c.Factory != nil {
				if err := m.load(c.Factory); err != nil {
					return err
				}
			}
		}
	}
	var err error
	if b.env, b.envView, err = b.newEnv(); err != nil {
		return err
	}
	b.boot = &sim.Device{Env: b.env, Preset: bootloader.PresetAduflash}
	if b.cfg, err = slots.ParseConfig([]byte(b.slotsConfig())); err != nil {
		return fmt.Errorf("board: %w", err)
	}
	return nil
}

// Power is the board's power switch.
func (b *Board) Power() *Power { return b.power }

// Running returns the bank the kernel runs from ("" before the first boot).
func (b *Board) Running() string { b.mu.Lock(); defer b.mu.Unlock(); return b.running }

// Boots returns how many times the board booted.
func (b *Board) Boots() int { b.mu.Lock(); defer b.mu.Unlock(); return b.boots }

// Slot returns a copy of the first n bytes of a bank's rootfs slot.
func (b *Board) Slot(bank string, n int) []byte { return b.Content(bank, "rootfs", n) }

// Content returns a copy of the first n bytes (fewer at the end of the slot) of a bank's
// slot of class ("" for a shared slot), in the order the slot writer lays them out (NAND:
// bad blocks skipped), whatever the power; nil for a slot the board does not have.
func (b *Board) Content(bank, class string, n int) []byte {
	m, ok := b.media[Name(bank, class)]
	if !ok {
		return nil
	}
	return m.read(n)
}

// Load puts data at the start of the medium name as a slot writer lays it out (NAND: in
// the good blocks), without counting operations, as the factory programs it.
func (b *Board) Load(name string, data []byte) error {
	m, ok := b.media[name]
	if !ok {
		return fmt.Errorf("board: no medium %q", name)
	}
	return m.load(data)
}

// Flash returns the raw flash medium name ("B/rootfs", "env"), not behind the power switch,
// for inspection and for faults (bad blocks, lies); nil on a block device.
func (b *Board) Flash(name string) *mtdsim.Flash { return b.media[name].flash }

// Cmdline is the path of the kernel command line file.
func (b *Board) Cmdline() string { return b.cmdline }

// FS is the file system of the agent's state, behind the power switch: what was not synced
// is lost at a cut. FS().Inspect() reads it whatever the power.
func (b *Board) FS() *powersim.MemFS { return b.fs }

// Bootloader is the bootloader backend the agent uses: U-Boot's environment behind the
// power switch, with the aduflash preset and two boot attempts.
func (b *Board) Bootloader() (*bootloader.UBoot, error) { return b.backend(b.env) }

// BootState returns the bootloader state, whatever the power.
func (b *Board) BootState() (bootloader.State, error) {
	bl, err := b.backend(b.envView)
	if err != nil {
		return bootloader.State{}, err
	}
	return bl.State()
}

// Floors returns the anti-rollback floors the bootloader keeps, whatever the power.
func (b *Board) Floors() (bootloader.Floors, error) {
	bl, err := b.backend(b.envView)
	if err != nil {
		return nil, err
	}
	return bl.Floors()
}

func (b *Board) backend(env *ubootenv.Env) (*bootloader.UBoot, error) {
	return bootloader.NewUBoot(env, bootloader.UBootConfig{Preset: bootloader.PresetAduflash, Attempts: 2})
}

// Layout is the slot layout the agent uses: the board's [slots] configuration over its
// media, behind the power switch.
func (b *Board) Layout() *slots.Layout {
	return slots.NewLayout(b.cfg, slots.Env{Dev: filepath.Join(b.o.Dir, "dev"), Sysfs: filepath.Join(b.o.Dir, "sys"), Cmdline: b.cmdline,
		OpenFlash: func(s *slots.Slot) (slots.Flash, error) { return b.flashOf(Name(s.Bank, s.Class), b.power), nil },
		OpenBlock: func(s *slots.Slot) (slots.BlockDevice, int64, error) {
			name := Name(s.Bank, s.Class)
			return b.diskOf(name, b.power), b.media[name].disk.Size(), nil
		}})
}

// PowerOn switches the board on (after a cut, with what the cut left on the media) and runs
// U-Boot, which saves its environment on a trial boot (bootcount), and writes the kernel
// command line of the bank it starts, which Running then names. A cut that falls on U-Boot's
// save leaves the board off before any kernel starts: PowerOn returns ErrPowerCut and may be
// called again. A cut armed with CutAt and not reached stays armed.
func (b *Board) PowerOn() (sim.Boot, error) {
	if b.power.IsOff() {
		b.power.On()
	}
	boot, err := b.boot.Reset()
	if err != nil && b.power.IsOff() {
		return sim.Boot{}, fmt.Errorf("board: U-Boot: %w", ErrPowerCut)
	}
	if err != nil {
		return sim.Boot{}, fmt.Errorf("board: U-Boot: %w", err)
	}
	if err := os.WriteFile(b.cmdline, []byte("console=ttyS0 adu.slot="+string(boot.Bank)+"\n"), 0o644); err != nil {
		return sim.Boot{}, err
	}
	b.mu.Lock()
	b.running = string(boot.Bank)
	b.boots++
	b.mu.Unlock()
	return boot, nil
}
