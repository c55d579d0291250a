package devicesim

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/powersim"
	"github.com/aduflash/aduflash/slots"
	"github.com/aduflash/aduflash/smp"
)

// MCUOptions describe an MCU attached to the board, as a gateway has one on its network: a
// simulated MCU with MCUboot (package devicesim/mcusim) whose SMP server listens on UDP at
// 127.0.0.1, and a [[slots.mcu]] entry of class Class in the board's config. The MCU has
// power of its own; the gateway's SMP requests go through the board's power switch, so
// that a power cut of the gateway can fall on any of them.
type MCUOptions struct {
	Class string        // default "mcu"
	Sim   mcusim.Config // the MCU (Sim.Primary: its factory image)
	// Keyring verifies its images (default: Options.Keyring).
	Keyring *image.Keyring
	// Healthy is its health check, of the image it runs (nil: the agent's SMP echo).
	Healthy func(running *mcuboot.Image) bool
	// SMP are the gateway's SMP client options (zero: quick timeouts for a local MCU).
	SMP smp.Options
}

// mcuCheck is the health command of the attached MCU.
const mcuCheck = "mcu-check"

// attachedMCU is the running MCU and its UDP server.
type attachedMCU struct {
	o    MCUOptions
	sim  *mcusim.MCU
	stop context.CancelFunc
	done chan struct{}
}

// attachMCU powers the MCU on, starts its SMP server and adds it to the board's config.
func attachMCU(o *MCUOptions, bo *board.Options) (*attachedMCU, error) {
	m := &attachedMCU{o: *o, done: make(chan struct{})}
	if m.o.Class == "" {
		m.o.Class = "mcu"
	}
	if m.o.SMP == (smp.Options{}) {
		m.o.SMP = smp.Options{Timeout: 200 * time.Millisecond, EraseTimeout: time.Second, Retries: 3}
	}
	var err error
	if m.sim, err = mcusim.New(o.Sim); err != nil {
		return nil, fmt.Errorf("devicesim: %w", err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("devicesim: the MCU's SMP server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	go func() {
		defer close(m.done)
		m.sim.ServeUDP(ctx, pc)
	}()
	cfg := slots.MCUConfig{Name: m.o.Class, Class: m.o.Class, Address: pc.LocalAddr().String(), SlotSize: slots.Size(slotSize(o.Sim)),
		BootTimeout: 5 * time.Second}
	if o.Healthy != nil {
		cfg.HealthCommand = []string{mcuCheck}
	}
	bo.MCUs = append(bo.MCUs, cfg)
	return m, nil
}

func slotSize(c mcusim.Config) int64 {
	if c.SlotSize == 0 {
		return mcusim.DefaultSlotSize
	}
	return c.SlotSize
}

// MCU returns the attached MCU (nil: none).
func (d *Device) MCU() *mcusim.MCU {
	if d.mcu == nil {
		return nil
	}
	return d.mcu.sim
}

// Close stops the attached MCU's SMP server.
func (d *Device) Close() {
	if d.mcu != nil {
		d.mcu.stop()
		<-d.mcu.done
	}
}

// agentOptions let the agent reach the MCU over UDP through the board's power switch, and
// trust its images' keys.
func (m *attachedMCU) agentOptions(o *agent.Options, power *board.Power, kr *image.Keyring) {
	if m.o.Keyring != nil {
		kr = m.o.Keyring
	}
	o.MCUKeyrings = map[string]*image.Keyring{m.o.Class: kr}
	o.OpenMCU = func(ctx context.Context, c *slots.MCUConfig) (*smp.Client, error) {
		t, err := smp.DialUDP(ctx, c.Address)
		if err != nil {
			return nil, err
		}
		return smp.NewClient(powered{Transport: t, power: power}, m.o.SMP), nil
	}
}

// check is the MCU's health command.
func (m *attachedMCU) check(at health.Attempt) (int, error) {
	if m.o.Healthy(m.sim.Running()) {
		return 0, nil
	}
	fmt.Fprintln(at.Output, "the MCU's application did not come up")
	return 1, nil
}

// powered is an SMP transport of the gateway: each request it sends is an operation of the
// board's power switch, so a power cut of the gateway can fall on it (it is not sent).
type powered struct {
	smp.Transport
	power *board.Power
}

func (p powered) Send(ctx context.Context, pkt []byte) error {
	if err := p.power.Op(powersim.SMP, "mcu"); err != nil {
		return fmt.Errorf("%w: %w", smp.ErrClosed, err)
	}
	return p.Transport.Send(ctx, pkt)
}

// MCUImages returns the attached MCU's image list, as an SMP image state read answers it.
func (d *Device) MCUImages() ([]smp.SlotState, error) {
	if d.mcu == nil {
		return nil, fmt.Errorf("devicesim: no MCU attached")
	}
	req := smp.EncodePacket(smp.Header{Op: smp.OpRead, Group: smp.GroupImage, ID: smp.IDState, Seq: 1}, []byte{0xa0})
	_, body, err := smp.DecodePacket(d.mcu.sim.Handle(req))
	if err != nil {
		return nil, fmt.Errorf("devicesim: the MCU's image list: %w", err)
	}
	var list struct {
		Images []smp.SlotState `cbor:"images"`
	}
	if err := cbor.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("devicesim: the MCU's image list: %w", err)
	}
	return list.Images, nil
}
