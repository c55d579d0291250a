// Package devicesim is a simulated device for demos and end-to-end tests: a simulated board
// (package devicesim/board: two banks on simulated NAND, SPI NOR or a block device, a
// redundant U-Boot environment whose bootcount and rollback bootloader/sim plays, a
// simulated file system) running the real update agent (package agent), rebooting when the
// agent asks and after power cuts.
//
// An MCU may be attached to the board (Options.MCU, mcu.go): a simulated MCU with MCUboot
// behind an SMP server on UDP at 127.0.0.1, which the agent updates as a slot of the gateway.
//
// Scope: the board's life cycle (power on, U-Boot, kernel command line, the agent, reboot, a
// power cut at any flash, environment or journal operation, U-Boot's own environment saves
// included, tearing it or not: see board.Power). The IoT Hub connection is the caller's:
// Options.Connect opens one per boot, as a real device reconnects after a reboot. The
// package logs only through Options.Logger and keeps no package-level state.
package devicesim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/journal"
)

// Options describe a device.
type Options struct {
	// Board is the hardware: storage, slots, geometry, factory content (Board.Dir is
	// required). The agent's state folder lives in the board's simulated file system.
	Board board.Options
	// Identity reported to the service.
	Manufacturer, Model string
	Properties          []adu.DeviceProperty
	ModelID             string // default adu.ModelV3
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
	// MCU, if set, attaches a simulated MCU to the board (mcu.go).
	MCU *MCUOptions
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

// Device is a simulated board running the update agent.
type Device struct {
	*board.Board
	o   Options
	mcu *attachedMCU
}

// stateDir is the agent's state folder in the board's file system.
const stateDir = "/var/lib/aduagent"

// ConnectWith is an Options.Connect that connects with cn: a connection string, or DPS
// (the device registers on its first boot and keeps the assignment for the next ones).
func ConnectWith(cn *agent.Connector) func(ctx context.Context) (agent.Hub, func(), error) {
	return func(ctx context.Context) (agent.Hub, func(), error) {
		c, err := cn.Dial(ctx)
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	}
}

// New builds a device that has never booted.
func New(o Options) (*Device, error) {
	if o.Connect == nil || o.Manufacturer == "" || o.Model == "" {
		return nil, errors.New("devicesim: Connect, Manufacturer and Model are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Device{o: o}
	if o.MCU != nil {
		var err error
		if d.mcu, err = attachMCU(o.MCU, &o.Board); err != nil {
			return nil, err
		}
	}
	b, err := board.New(o.Board)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("devicesim: %w", err)
	}
	d.Board = b
	return d, nil
}

// Record returns the agent's journal record (what each bank holds, the last outcome),
// whatever the power.
func (d *Device) Record() (agent.Record, error) {
	var r agent.Record
	j, err := journal.Open(stateDir, journal.WithFS(d.FS().Inspect()), journal.WithName(agent.RecordName))
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

// PowerOn switches the board on and runs U-Boot (see board.Board.PowerOn); a cut that falls
// on U-Boot's environment save leaves the board off before any kernel starts, and it is
// switched on again. It returns what U-Boot did on the boot that started a kernel.
func (d *Device) PowerOn() (sim.Boot, error) {
	for {
		b, err := d.Board.PowerOn()
		if errors.Is(err, board.ErrPowerCut) {
			d.event(Event{Kind: "power-cut", Detail: "U-Boot"})
			continue
		}
		if err != nil {
			return sim.Boot{}, fmt.Errorf("devicesim: %w", err)
		}
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
		case d.Power().IsOff():
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
	bl, err := d.Bootloader()
	if err != nil {
		return err
	}
	var written int64
	var mu sync.Mutex
	last := time.Time{}
	o := agent.Options{
		Settings: agent.Settings{StateDir: stateDir, Manufacturer: d.o.Manufacturer, Model: d.o.Model, Properties: d.o.Properties,
			ModelID: d.o.ModelID, NoBuiltinRoots: d.o.NoBuiltinRoots, HealthTimeout: 30 * time.Second,
			HealthChecks: []health.Check{{Name: "application", Command: []string{"application-check"}}}},
		Layout: d.Layout(), Bootloader: bl, JournalFS: d.FS(),
		Keyring: d.o.Keyring, Roots: d.o.Roots,
		HealthOptions: health.Options{Exec: func(ctx context.Context, at health.Attempt) (int, error) {
			if at.Argv[0] == mcuCheck {
				return d.mcu.check(at)
			}
			bank := d.Running()
			if d.o.Healthy == nil || d.o.Healthy(bank, d.Slot(bank, math.MaxInt)) {
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
	if d.mcu != nil {
		d.mcu.agentOptions(&o, d.Power(), d.o.Keyring)
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
