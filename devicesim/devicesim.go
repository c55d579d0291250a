// Package devicesim is a simulated device for demos and end-to-end tests: two banks A and B
// on simulated storage (raw NAND with bad blocks, SPI NOR, or a block device, from package
// mtd/mtdsim), each with a rootfs slot and optionally a kernel slot; a redundant U-Boot
// environment on the same storage, with the aduflash variable preset, whose bootcount and
// rollback are played by bootloader/sim; and the real update agent (package agent) with its
// journal in a simulated file system; rebooting when the agent asks and after power cuts.
//
// Scope: the board and its life cycle (power on, U-Boot, kernel command line, the agent,
// reboot, a power cut at any flash, environment or journal operation, U-Boot's own
// environment saves included, tearing it or not: see Power). The IoT Hub connection is the
// caller's: Options.Connect opens one per boot, as a real device reconnects after a reboot.
// The package logs only through Options.Logger and keeps no package-level state.
package devicesim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/powersim"
	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/slots"
)

// Options describe a device.
type Options struct {
	// Dir holds the kernel command line (required). The agent's state folder lives in the
	// board's simulated file system.
	Dir string
	// Identity reported to the service.
	Manufacturer, Model string
	Properties          []adu.DeviceProperty
	ModelID             string // default adu.ModelV3
	// Storage of the banks and the environment (default NAND).
	Storage Storage
	// Slot geometry: SlotSize bytes per rootfs slot (default 16 MiB). Raw flash has erase
	// blocks of EraseSize (default 128 KiB); NAND pages of PageSize (default 2 KiB), NOR
	// programs 256-byte pages; a block device has 512-byte sectors.
	SlotSize, EraseSize, PageSize int
	// Factory is what bank A's rootfs slot holds at first power-on.
	Factory []byte
	// Kernel, if set, gives each bank a second slot class, "kernel", of KernelSize bytes
	// (default: Kernel's length rounded up to erase blocks, plus one), which bank A holds
	// at first power-on.
	Kernel     []byte
	KernelSize int
	// FactoryBad lists the NAND erase blocks that are bad from the factory, per medium: a
	// slot ("B/rootfs") or "env". GoesBad lists erase blocks, per slot, whose erases fail
	// from the first on: they go bad during an update. ReserveBlocks is the bad-block
	// reserve of each NAND slot.
	FactoryBad    map[string][]int
	GoesBad       map[string][]int
	ReserveBlocks int
	// SyncInterval is how many bytes the agent writes between syncs and resume points
	// (default 1 MiB).
	SyncInterval int
	// Seed seeds what a power cut tears and loses (default 1).
	Seed uint64
	// Keyring trusts the image signing keys; Roots the manifest root keys (NoBuiltinRoots
	// leaves Microsoft's out).
	Keyring        *image.Keyring
	Roots          []adu.RootKey
	NoBuiltinRoots bool
	// Healthy decides the post-boot health check of a bank (nil: always healthy).
	Healthy func(bank string, content []byte) bool
	// Connect opens the IoT Hub connection of one boot; close is called at the reboot.
	Connect func(ctx context.Context) (hub agent.Hub, close func(), err error)
	// Events, if set, receives what happens on the board, in order.
	Events func(Event)
	Logger *slog.Logger
	// Agent, if set, adjusts the agent's options before each boot.
	Agent func(*agent.Options)
}

// Event is something that happened on the board.
type Event struct {
	Time  time.Time
	Kind  string // "boot", "reboot", "power-cut" (Detail "U-Boot": during its env save), "written"
	Bank  string // the bank that booted, or that was written
	Bytes int64  // "written": payload bytes into the slot so far
	// Rollback is set on a boot where U-Boot ran its altbootcmd.
	Rollback bool
	Detail   string
}

// Device is a simulated board.
type Device struct {
	o       Options
	power   *Power
	fs      *powersim.MemFS
	media   map[string]medium // "<bank>/<class>" and "env"
	env     *ubootenv.Env     // behind the power switch
	envView *ubootenv.Env     // the same, for inspection whatever the power
	boot    *sim.Device
	cfg     *slots.Config
	cmdline string

	mu      sync.Mutex
	running string // the bank the kernel runs from
	boots   int
}

// stateDir is the agent's state folder in the board's file system.
const stateDir = "/var/lib/aduagent"

// New builds a device that has never booted.
func New(o Options) (*Device, error) {
	if o.Dir == "" || o.Connect == nil || o.Manufacturer == "" || o.Model == "" {
		return nil, errors.New("devicesim: Dir, Connect, Manufacturer and Model are required")
	}
	o.setDefaults()
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	d := &Device{o: o, power: powersim.New(powersim.WithSeed(o.Seed)), media: map[string]medium{}, cmdline: filepath.Join(o.Dir, "cmdline")}
	d.fs = powersim.NewMemFS(d.power)
	if err := d.build(); err != nil {
		return nil, err
	}
	return d, nil
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
	if o.KernelSize == 0 && o.Kernel != nil {
		o.KernelSize = (len(o.Kernel)/o.EraseSize + 2) * o.EraseSize
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 1 << 20
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// build makes the storage: the slots with their factory content, the environment, the
// slot configuration and U-Boot.
func (d *Device) build() error {
	factory := map[string][]byte{"rootfs": d.o.Factory, "kernel": d.o.Kernel}
	size := map[string]int{"rootfs": d.o.SlotSize, "kernel": d.o.KernelSize}
	for _, class := range d.classes() {
		if len(factory[class]) > size[class] {
			return fmt.Errorf("devicesim: factory %s of %d bytes for a %d-byte slot", class, len(factory[class]), size[class])
		}
		for _, bank := range []string{"A", "B"} {
			m, err := d.newMedium(bank+"/"+class, size[class], 0)
			if err != nil {
				return err
			}
			if bank == "A" && factory[class] != nil {
				if err := m.load(factory[class]); err != nil {
					return err
				}
			}
		}
	}
	var err error
	if d.env, d.envView, err = d.newEnv(); err != nil {
		return err
	}
	d.boot = &sim.Device{Env: d.env, Preset: bootloader.PresetAduflash}
	if d.cfg, err = slots.ParseConfig([]byte(d.slotsConfig())); err != nil {
		return fmt.Errorf("devicesim: %w", err)
	}
	return nil
}

// Power is the board's power switch.
func (d *Device) Power() *Power { return d.power }

// Running returns the bank the kernel runs from ("" before the first boot).
func (d *Device) Running() string { d.mu.Lock(); defer d.mu.Unlock(); return d.running }

// Boots returns how many times the board booted.
func (d *Device) Boots() int { d.mu.Lock(); defer d.mu.Unlock(); return d.boots }

// Slot returns a copy of the first n bytes of a bank's rootfs slot.
func (d *Device) Slot(bank string, n int) []byte { return d.Content(bank, "rootfs", n) }

// Content returns a copy of the first n bytes (fewer at the end of the slot) of a bank's
// slot of class, in the order the slot writer lays them out (NAND: bad blocks skipped),
// whatever the power; nil for a slot the board does not have.
func (d *Device) Content(bank, class string, n int) []byte {
	m, ok := d.media[bank+"/"+class]
	if !ok {
		return nil
	}
	return m.read(n)
}

// BootState returns the bootloader state, whatever the power.
func (d *Device) BootState() (bootloader.State, error) {
	bl, err := d.backend(d.envView)
	if err != nil {
		return bootloader.State{}, err
	}
	return bl.State()
}

// Floors returns the anti-rollback floors the bootloader keeps, whatever the power.
func (d *Device) Floors() (bootloader.Floors, error) {
	bl, err := d.backend(d.envView)
	if err != nil {
		return nil, err
	}
	return bl.Floors()
}

// Record returns the agent's journal record (what each bank holds, the last outcome),
// whatever the power.
func (d *Device) Record() (agent.Record, error) {
	var r agent.Record
	j, err := journal.Open(stateDir, journal.WithFS(d.fs.Inspect()), journal.WithName(agent.RecordName))
	if err != nil {
		return r, err
	}
	_, err = j.Load(&r)
	return r, err
}

func (d *Device) event(e Event) {
	if d.o.Events != nil {
		e.Time = time.Now()
		d.o.Events(e)
	}
}

func (d *Device) backend(env *ubootenv.Env) (*bootloader.UBoot, error) {
	return bootloader.NewUBoot(env, bootloader.UBootConfig{Preset: bootloader.PresetAduflash, Attempts: 2})
}

// PowerOn switches the board on (after a cut, with what the cut left on the media) and runs
// U-Boot, which saves its environment on a trial boot (bootcount). A cut that falls on that
// save leaves the board off before any kernel starts, and it is switched on again. It
// returns what U-Boot did on the boot that started a kernel, whose bank Running then
// names. A cut armed with CutAt and not reached stays armed.
func (d *Device) PowerOn() (sim.Boot, error) {
	for {
		if d.power.IsOff() {
			d.power.On()
		}
		b, err := d.boot.Reset()
		if err != nil && d.power.IsOff() {
			d.event(Event{Kind: "power-cut", Detail: "U-Boot"})
			continue
		}
		if err != nil {
			return sim.Boot{}, fmt.Errorf("devicesim: U-Boot: %w", err)
		}
		if err := os.WriteFile(d.cmdline, []byte("console=ttyS0 adu.slot="+string(b.Bank)+"\n"), 0o644); err != nil {
			return sim.Boot{}, err
		}
		d.mu.Lock()
		d.running = string(b.Bank)
		d.boots++
		d.mu.Unlock()
		d.event(Event{Kind: "boot", Bank: string(b.Bank), Rollback: b.Rollback})
		return b, nil
	}
}

// Run powers the board on and keeps it running: U-Boot, the agent's Boot and Run on a fresh
// connection, and a reboot whenever the agent asks for one or the power was cut. It returns
// when ctx ends.
func (d *Device) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if _, err := d.PowerOn(); err != nil {
			return err
		}
		err := d.RunAgent(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case d.power.IsOff():
			d.event(Event{Kind: "power-cut", Bank: d.Running(), Detail: fmt.Sprint(err)})
		case errors.Is(err, agent.ErrRebooting):
			d.event(Event{Kind: "reboot", Bank: d.Running()})
		case err != nil:
			d.o.Logger.Warn("the agent stopped; rebooting", "err", err)
			d.event(Event{Kind: "reboot", Bank: d.Running(), Detail: err.Error()})
			select { // do not spin on a persistent error
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return ctx.Err()
}

// RunAgent is the life of the agent on one boot: Boot, then Run on a fresh connection,
// until it asks for a reboot (agent.ErrRebooting), the power goes (an error, Power().IsOff())
// or ctx ends.
func (d *Device) RunAgent(ctx context.Context) error {
	bl, err := d.backend(d.env)
	if err != nil {
		return err
	}
	layout := slots.NewLayout(d.cfg, slots.Env{Dev: filepath.Join(d.o.Dir, "dev"), Sysfs: filepath.Join(d.o.Dir, "sys"), Cmdline: d.cmdline,
		OpenFlash: func(s *slots.Slot) (slots.Flash, error) { return d.flashOf(s.Bank+"/"+s.Class, d.power), nil },
		OpenBlock: func(s *slots.Slot) (slots.BlockDevice, int64, error) {
			return d.diskOf(s.Bank+"/"+s.Class, d.power), d.media[s.Bank+"/"+s.Class].disk.Size(), nil
		}})
	var written int64
	var mu sync.Mutex
	last := time.Time{}
	o := agent.Options{
		Settings: agent.Settings{StateDir: stateDir, Manufacturer: d.o.Manufacturer, Model: d.o.Model, Properties: d.o.Properties,
			ModelID: d.o.ModelID, NoBuiltinRoots: d.o.NoBuiltinRoots, HealthTimeout: 30 * time.Second,
			HealthChecks: []health.Check{{Name: "application", Command: []string{"application-check"}}}},
		Layout: layout, Bootloader: bl, JournalFS: d.fs,
		Keyring: d.o.Keyring, Roots: d.o.Roots,
		HealthOptions: health.Options{Exec: func(ctx context.Context, at health.Attempt) (int, error) {
			bank := d.Running()
			if d.o.Healthy == nil || d.o.Healthy(bank, d.Slot(bank, d.o.SlotSize)) {
				return 0, nil
			}
			fmt.Fprintln(at.Output, "the application did not come up")
			return 1, nil
		}},
		OnBytes: func(n int64) {
			mu.Lock()
			written += n
			w := written
			emit := time.Since(last) > 100*time.Millisecond || w/(1<<20) != (w-n)/(1<<20)
			if emit {
				last = time.Now()
			}
			mu.Unlock()
			if emit {
				d.event(Event{Kind: "written", Bytes: w})
			}
		},
		Logger:         d.o.Logger,
		ReportAttempts: 2,
		ReportBackoff:  100 * time.Millisecond,
	}
	if d.o.Agent != nil {
		d.o.Agent(&o)
	}
	a, err := agent.New(o)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Boot(ctx); err != nil {
		return err
	}
	hub, closeHub, err := d.o.Connect(ctx)
	if err != nil {
		return fmt.Errorf("devicesim: connecting: %w", err)
	}
	defer closeHub()
	return a.Run(ctx, hub)
}
