// Package devicesim is a simulated device for demos and end-to-end tests: two banks of
// simulated NAND flash (package mtd/mtdsim), a U-Boot environment with the aduflash variable
// preset whose bootcount and rollback are played by bootloader/sim, and the real update agent
// (package agent) with its journal on disk, rebooting when the agent asks and after power
// cuts.
//
// Scope: the board and its life cycle (power on, U-Boot, kernel command line, the agent,
// reboot, power cut after N flash/env/journal operations). The IoT Hub connection is the
// caller's: Options.Connect opens one per boot, as a real device reconnects after a reboot.
// The package logs only through Options.Logger and keeps no package-level state.
package devicesim

import (
	"bytes"
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
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/powersim"
	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/slots"
)

// Options describe a device.
type Options struct {
	// Dir holds the agent's state folder and the kernel command line (required).
	Dir string
	// Identity reported to the service.
	Manufacturer, Model string
	Properties          []adu.DeviceProperty
	ModelID             string // default adu.ModelV3
	// Slot geometry: SlotSize bytes of NAND per bank (default 16 MiB), erase blocks of
	// EraseSize (default 128 KiB), pages of PageSize (default 2 KiB).
	SlotSize, EraseSize, PageSize int
	// Factory is what bank A holds at first power-on.
	Factory []byte
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
	Kind  string // "boot", "reboot", "power-cut", "written"
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
	nand    map[string]*mtdsim.Flash
	env     *sim.MemEnv
	boot    *sim.Device
	cfg     *slots.Config
	cmdline string
	state   string

	mu      sync.Mutex
	running string // the bank the kernel runs from
	boots   int
}

// New builds a device that has never booted.
func New(o Options) (*Device, error) {
	if o.Dir == "" || o.Connect == nil || o.Manufacturer == "" || o.Model == "" {
		return nil, errors.New("devicesim: Dir, Connect, Manufacturer and Model are required")
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
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Device{o: o, power: powersim.New(), nand: map[string]*mtdsim.Flash{},
		cmdline: filepath.Join(o.Dir, "cmdline"), state: filepath.Join(o.Dir, "state")}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	for _, b := range []string{"A", "B"} {
		f, err := mtdsim.NewNAND(o.SlotSize, o.EraseSize, o.PageSize)
		if err != nil {
			return nil, fmt.Errorf("devicesim: %w", err)
		}
		d.nand[b] = f
	}
	if len(o.Factory) > o.SlotSize {
		return nil, fmt.Errorf("devicesim: factory image of %d bytes for a %d-byte slot", len(o.Factory), o.SlotSize)
	}
	if o.Factory != nil {
		img := append(bytes.Clone(o.Factory), bytes.Repeat([]byte{0xff}, o.SlotSize-len(o.Factory))...)
		if err := d.nand["A"].Load(img); err != nil {
			return nil, fmt.Errorf("devicesim: %w", err)
		}
	}
	d.env = sim.NewMemEnv(map[string]string{"adu_slot": "A"})
	d.boot = &sim.Device{Env: d.env, Preset: bootloader.PresetAduflash}
	cfg, err := slots.ParseConfig([]byte(slotsConfig))
	if err != nil {
		return nil, fmt.Errorf("devicesim: %w", err)
	}
	d.cfg = cfg
	return d, nil
}

const slotsConfig = `
[slots]
active = "cmdline"
sync_interval = "1MiB"
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "nand"
mtd = "rootfs_a"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "nand"
mtd = "rootfs_b"
`

// Power is the board's power switch.
func (d *Device) Power() *Power { return d.power }

// Running returns the bank the kernel runs from ("" before the first boot).
func (d *Device) Running() string { d.mu.Lock(); defer d.mu.Unlock(); return d.running }

// Boots returns how many times the board booted.
func (d *Device) Boots() int { d.mu.Lock(); defer d.mu.Unlock(); return d.boots }

// Slot returns a copy of the first n bytes of a bank's slot.
func (d *Device) Slot(bank string, n int) []byte {
	f := d.nand[bank]
	if f == nil || n > d.o.SlotSize {
		return nil
	}
	b := make([]byte, n)
	f.ReadAt(b, 0)
	return b
}

// BootState returns the bootloader state.
func (d *Device) BootState() (bootloader.State, error) {
	bl, err := d.backend()
	if err != nil {
		return bootloader.State{}, err
	}
	return bl.State()
}

// Record returns the agent's journal record (what each bank holds, the last outcome).
func (d *Device) Record() (agent.Record, error) {
	var r agent.Record
	j, err := journal.Open(d.state, journal.WithName(agent.RecordName))
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

func (d *Device) backend() (bootloader.Backend, error) {
	return bootloader.NewUBoot(powersim.Env{Store: d.env, P: d.power}, bootloader.UBootConfig{Preset: bootloader.PresetAduflash, Attempts: 2})
}

// powerOn runs U-Boot once and points the kernel command line at the bank it starts.
func (d *Device) powerOn() error {
	if d.power.IsOff() {
		d.power.On()
	} // else a cut armed with CutAfter stays armed across the reboot
	b, err := d.boot.Reset()
	if err != nil {
		return fmt.Errorf("devicesim: U-Boot: %w", err)
	}
	if err := os.WriteFile(d.cmdline, []byte("console=ttyS0 adu.slot="+string(b.Bank)+"\n"), 0o644); err != nil {
		return err
	}
	d.mu.Lock()
	d.running = string(b.Bank)
	d.boots++
	d.mu.Unlock()
	d.event(Event{Kind: "boot", Bank: string(b.Bank), Rollback: b.Rollback})
	return nil
}

// Run powers the board on and keeps it running: U-Boot, the agent's Boot and Run on a fresh
// connection, and a reboot whenever the agent asks for one or the power was cut. It returns
// when ctx ends.
func (d *Device) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := d.powerOn(); err != nil {
			return err
		}
		err := d.runOnce(ctx)
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

// runOnce is one boot of the agent.
func (d *Device) runOnce(ctx context.Context) error {
	bl, err := d.backend()
	if err != nil {
		return err
	}
	layout := slots.NewLayout(d.cfg, slots.Env{Dev: filepath.Join(d.o.Dir, "dev"), Sysfs: filepath.Join(d.o.Dir, "sys"), Cmdline: d.cmdline,
		OpenFlash: func(s *slots.Slot) (slots.Flash, error) {
			return powersim.Flash{Flash: d.nand[s.Bank], P: d.power}, nil
		}})
	var written int64
	var mu sync.Mutex
	last := time.Time{}
	o := agent.Options{
		Settings: agent.Settings{StateDir: d.state, Manufacturer: d.o.Manufacturer, Model: d.o.Model, Properties: d.o.Properties,
			ModelID: d.o.ModelID, NoBuiltinRoots: d.o.NoBuiltinRoots, HealthTimeout: 30 * time.Second,
			HealthChecks: []health.Check{{Name: "application", Command: []string{"application-check"}}}},
		Layout: layout, Bootloader: bl, JournalFS: powersim.FS{FS: journal.OSFS(), P: d.power},
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
