package slots

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aduflash/aduflash/internal/errkind"
)

// An attached MCU (a [[slots.mcu]] entry) is a slot of the gateway that no bank owns: an MCU
// behind a serial line or UDP running MCUboot with an mcumgr (SMP) server. An update step
// whose slotClass is the MCU's class uploads its MCUboot image into the MCU's secondary slot;
// MCUboot swaps it in for a test boot, and the agent confirms it or lets MCUboot revert it.
// This package knows the MCU's config and writes its upload slot through MCULink, which the
// agent provides over an SMP client.

// TypeMCU is the Type of the Slot of an MCU target (MCUTarget); a [[slots.slot]] cannot have it.
const TypeMCU = "mcu"

// Transports of an MCU.
const (
	MCUSerial = "serial"
	MCUUDP    = "udp"
)

// Defaults of an MCUConfig.
const (
	DefaultMCUBaud     = 115200
	DefaultMCULineSize = 128 // MCUboot's and Zephyr's default line buffer
)

// MCUConfig is one [[slots.mcu]] entry: an MCU attached to the gateway.
type MCUConfig struct {
	// Name names the MCU in reports and logs (default: its class).
	Name string `toml:"name"`
	// Class is the slot class an update step names (handlerProperties.slotClass) to update
	// this MCU; no slot of a bank has it.
	Class string `toml:"class"`
	// Transport is MCUSerial (Port, Baud, LineSize) or MCUUDP (Address).
	Transport string `toml:"transport"`
	Port      string `toml:"port"`
	Baud      int    `toml:"baud"`
	LineSize  int    `toml:"line_size"`
	Address   string `toml:"address"` // host[:port], port 1337 by default
	// SlotSize is the size of the MCU's image slots: no larger image is uploaded.
	SlotSize Size `toml:"slot_size"`
	// Keyring and Pub are the keys that verify this MCU's images (a keyring file, PEM public
	// key files); neither: the agent's keys. Read by the agent, not here.
	Keyring string   `toml:"keyring"`
	Pub     []string `toml:"pub"`
	// HealthCommand is the argv the agent runs to check the MCU once it runs a new image on
	// trial (exit code 0: healthy); empty: an SMP echo must come back.
	HealthCommand []string `toml:"health_command"`
	// Timeout is how long one SMP request waits for its reply (0: the SMP client's default);
	// BootTimeout how long the MCU may take to answer again after a reset (0: 30s).
	Timeout     time.Duration `toml:"timeout"`
	BootTimeout time.Duration `toml:"boot_timeout"`
}

// DefaultMCUBootTimeout is MCUConfig.BootTimeout's default.
const DefaultMCUBootTimeout = 30 * time.Second

// MCU returns the attached MCU whose class is class, or nil.
func (c *Config) MCU(class string) *MCUConfig {
	for i := range c.MCUs {
		if c.MCUs[i].Class == class {
			return &c.MCUs[i]
		}
	}
	return nil
}

// normalizeMCUs fills in the MCUs' defaults and checks them: a class of their own (not a
// bank's, not another MCU's), a transport with its address, a slot size.
func (c *Config) normalizeMCUs() error {
	seen := map[string]bool{}
	for _, s := range c.Slots {
		seen[s.Class] = true
	}
	names := map[string]bool{}
	for i := range c.MCUs {
		m := &c.MCUs[i]
		where := fmt.Sprintf("slots.mcu[%d]", i)
		if err := checkClassName(m.Class); err != nil {
			return cfgErr("%s: %v", where, err)
		}
		if seen[m.Class] {
			return cfgErr("%s: class %q is already a slot's or another MCU's: an MCU has a class of its own", where, m.Class)
		}
		seen[m.Class] = true
		m.Name = cmp(m.Name, m.Class)
		if names[m.Name] {
			return cfgErr("%s: name %q already used", where, m.Name)
		}
		names[m.Name] = true
		if err := m.normalize(); err != nil {
			return cfgErr("%s (%s): %v", where, m.Name, err)
		}
	}
	return nil
}

func (m *MCUConfig) normalize() error {
	switch m.Transport {
	case MCUSerial:
		if m.Port == "" || m.Address != "" {
			return errors.New(`transport "serial" takes port (a tty such as /dev/ttyACM0), not address`)
		}
		if m.Baud == 0 {
			m.Baud = DefaultMCUBaud
		}
		if m.LineSize == 0 {
			m.LineSize = DefaultMCULineSize
		}
		if m.Baud < 0 || m.LineSize < 0 {
			return fmt.Errorf("baud %d, line_size %d: must be positive", m.Baud, m.LineSize)
		}
	case MCUUDP:
		if m.Address == "" || m.Port != "" || m.Baud != 0 || m.LineSize != 0 {
			return errors.New(`transport "udp" takes address (host or host:port), not port, baud or line_size`)
		}
	default:
		return fmt.Errorf("transport %q: want %q or %q", m.Transport, MCUSerial, MCUUDP)
	}
	if m.SlotSize <= 0 {
		return errors.New("slot_size is required (the size of the MCU's image slots)")
	}
	for key, d := range map[string]time.Duration{"timeout": m.Timeout, "boot_timeout": m.BootTimeout} {
		if d < 0 || d > 0 && d < time.Millisecond {
			return fmt.Errorf("%s = %d: write a positive duration with a unit, such as \"5s\"", key, d)
		}
	}
	if m.BootTimeout == 0 {
		m.BootTimeout = DefaultMCUBootTimeout
	}
	if len(m.HealthCommand) > 0 && m.HealthCommand[0] == "" {
		return errors.New("health_command: the first element is the program")
	}
	return nil
}

// MCULink is an MCU's upload as the writer needs it; the agent implements it over an SMP
// client, with the image's size and SHA-256 (which go with the frame at offset 0).
type MCULink interface {
	// Upload sends the start of data, the image's bytes at off, in one upload frame (as much
	// of it as the frame takes), and returns how many bytes it sent and the offset the MCU
	// expects next: off+sent when it took them, or where its upload stands otherwise.
	Upload(off int64, data []byte) (sent int, next int64, err error)
}

// MCUTarget returns the upload slot of the attached MCU m as a write target over link: its
// writer streams the image into the MCU's secondary slot frame by frame, skipping what the
// MCU reports it holds already.
func (l *Layout) MCUTarget(m *MCUConfig, link MCULink) *Target {
	s := &Slot{SlotConfig: SlotConfig{Name: m.Name, Class: m.Class, Type: TypeMCU, Size: m.SlotSize}}
	return &Target{l: l, slot: s, capacity: int64(m.SlotSize), mcu: link}
}

// ErrMCUBehind: the MCU reports an upload offset before the bytes already streamed past (it
// lost its upload, e.g. at a reset): the image must be streamed again from the start, and
// the writer skips what the MCU holds.
var ErrMCUBehind = errkind.New(errkind.Environment, "slots: the MCU's upload stands before the stream")

// maxMCUStalls is how many frames in a row the MCU may answer without taking them.
const maxMCUStalls = 3

// mcuWriter streams an image into an MCU's upload slot. The MCU acknowledges every frame with
// the offset it expects next; bytes before that offset are skipped (the MCU has them, from
// an earlier upload of the same image). Nothing can be read back over SMP: the MCU checks the
// whole image against its SHA-256 at the end (MCULink reports a mismatch).
type mcuWriter struct {
	link   MCULink
	name   string
	size   int64
	cap    int64
	off    int64 // bytes streamed past
	acked  int64 // the offset the MCU expects next (-1: not asked yet)
	stalls int
	st     Stats
	err    error
}

// OpenWriter of an MCU target: see MCUTarget. There is no resume cursor: the MCU says where
// its upload stands.
func (t *Target) openMCUWriter(size int64) (Writer, error) {
	if size > t.capacity {
		return nil, fmt.Errorf("%w: %s: the image has %d bytes, the MCU's slot takes %d", ErrTooLarge, t.slot.Name, size, t.capacity)
	}
	return &mcuWriter{link: t.mcu, name: t.slot.Name, size: size, cap: t.capacity, acked: -1}, nil
}

func (w *mcuWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	if int64(n) > w.size-w.off {
		w.err = fmt.Errorf("%w: %s: more than the announced %d bytes", ErrTooLarge, w.name, w.size)
		return 0, w.err
	}
	for len(p) > 0 {
		if w.acked >= w.off+int64(len(p)) {
			w.st.BytesSkipped += int64(len(p))
			w.off += int64(len(p))
			break
		}
		if skip := w.acked - w.off; skip > 0 {
			w.st.BytesSkipped += skip
			p, w.off = p[skip:], w.acked
		}
		taken, err := w.frame(p)
		if err != nil {
			w.err = err
			return n - len(p), err
		}
		p, w.off = p[taken:], w.off+int64(taken)
	}
	return n, nil
}

// frame sends one frame of p (the bytes at w.off), learns where the MCU stands and returns
// how many bytes of p the MCU took.
func (w *mcuWriter) frame(p []byte) (int, error) {
	sent, next, err := w.link.Upload(w.off, p)
	if err != nil {
		return 0, fmt.Errorf("%s: upload at %d: %w", w.name, w.off, err)
	}
	w.st.Syncs++
	w.acked = next
	switch {
	case next == w.off+int64(sent):
		w.st.BytesWritten += int64(sent)
		w.st.UnitsWritten++
		w.stalls = 0
		return sent, nil
	case next < w.off:
		return 0, fmt.Errorf("%w: %s: it expects offset %d, the stream is at %d", ErrMCUBehind, w.name, next, w.off)
	case next == w.off:
		if w.stalls++; w.stalls > maxMCUStalls {
			return 0, fmt.Errorf("%s: the MCU answered offset %d %d times without taking the data", w.name, next, w.stalls)
		}
	}
	return 0, nil // the MCU is ahead (it holds more of the image) or did not take the frame
}

func (w *mcuWriter) Finish() error {
	if w.err != nil {
		return w.err
	}
	if w.off != w.size || w.acked != w.size {
		return fmt.Errorf("slots: %s: %d of %d bytes streamed, the MCU acknowledged %d", w.name, w.off, w.size, w.acked)
	}
	return nil
}

// ErrNoReadBack: an MCU's slot cannot be read over SMP.
var ErrNoReadBack = errkind.New(errkind.Environment, "slots: an MCU's slot cannot be read back")

func (w *mcuWriter) ReadAt([]byte, int64) (int, error) { return 0, ErrNoReadBack }
func (w *mcuWriter) Verify(io.Reader) error            { return ErrNoReadBack }
func (w *mcuWriter) VerifyWritten() error              { return ErrNoReadBack }
func (w *mcuWriter) Cursor() Cursor {
	return Cursor{Slot: w.name, Size: w.size, Offset: max(w.acked, 0)}
}
func (w *mcuWriter) Capacity() int64 { return w.cap }
func (w *mcuWriter) Stats() Stats    { return w.st }
func (w *mcuWriter) Close() error    { return nil }
