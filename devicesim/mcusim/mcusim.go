// Package mcusim is a simulated MCU for tests, demos and benchmarks: an application with an
// SMP (mcumgr) server over MCUboot, the way a Zephyr smp_svr build behind a gateway's UART
// or network behaves.
//
// Flash is one simulated NOR chip (mtd/mtdsim) holding the primary slot, the secondary slot
// and a small upload-state area. At every reset MCUboot's swap logic runs
// (bootloader/sim.MCUboot over bootloader/mcuboottrailer): an image marked for test is swapped
// in and reverted at the next reset unless it was confirmed; with Config.Keyring the
// secondary image's signature is checked first and an image that fails is erased instead of
// swapped in, as MCUboot does.
//
// The SMP server answers echo, reset, mcumgr params (or rc 8 with Config.NoParams, as
// MCUboot's serial recovery does), OS info, image list, test and confirm (by hash), erase,
// slot info and upload. Uploads go into the secondary slot: the frame at offset 0 (with len
// and sha) erases it and opens an upload session; every frame at the expected offset is
// written and answered with the next offset; a frame at another offset is answered with the
// expected one. The session (sha, length, offset reached) is kept in flash, so that after a
// reset or a power cut a frame at offset 0 with the same sha, or at the offset reached,
// resumes it (Zephyr keeps it in RAM only; the MCUs resume across resets).
//
// The server runs over a byte stream with the console framing (ServeSerial: a
// pseudo-terminal, paced like a UART with Config.Baud, input lines cut at Config.MaxLine as
// Zephyr's line buffer does) or over UDP (ServeUDP). Config.Fault is called for every
// request and may reset the MCU before or after it runs, or cut its power during the
// request's flash writes.
package mcusim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/smp"
)

// Defaults of Config.
const (
	DefaultSlotSize  = 256 << 10
	DefaultEraseSize = 4 << 10
	DefaultMaxLine   = 128 // Zephyr's line buffer (CONFIG_BOOT_MAX_LINE_INPUT_LEN)
	DefaultBufSize   = 1024
	writeSize        = 8 // flash_area_align, as MCUboot's simulator and bs_host use
	stateBlocks      = 4 // erase blocks of the upload-state area
)

// Config describes the MCU.
type Config struct {
	SlotSize  int64 // each slot's size (default DefaultSlotSize), a multiple of EraseSize
	EraseSize int   // default DefaultEraseSize
	// Primary is the image in the primary slot at the first power-on (nil: none).
	Primary []byte
	// Keyring, if set, is MCUboot's key: a secondary image whose signature fails is erased
	// at reset instead of swapped in.
	Keyring *image.Keyring
	// MaxLine is the longest input line kept (newline included); the rest of a longer line
	// is dropped, which garbles its frame (0: DefaultMaxLine; negative: no limit).
	MaxLine int
	// LineSize is the longest reply line (0: smp.DefaultLineSize).
	LineSize int
	// BufSize is the buf_size the MCU reports (0: DefaultBufSize); requests longer than it
	// are refused with rc 7 (message too large) like Zephyr's.
	BufSize int
	// NoParams answers "mcumgr params" with rc 8 (not supported), as MCUboot's serial
	// recovery does.
	NoParams bool
	// Baud paces ServeSerial like a UART at that rate, 10 bits a byte each way (0: no pacing).
	Baud int
	// Fault, if set, is called with every request (numbered from 1 since New) before it
	// runs, and says what happens to it. It runs with the MCU locked: it must not call the
	// MCU's methods.
	Fault func(n int, h smp.Header) Fault
}

// FaultKind is what happens to a request.
type FaultKind int

// Faults.
const (
	FaultNone FaultKind = iota
	// FaultReset: the MCU resets before it reads the request (no reply).
	FaultReset
	// FaultLostReply: the request runs, then the MCU resets before its reply leaves.
	FaultLostReply
	// FaultPowerCut: the power fails during the request: Ops flash operations complete,
	// the next is torn (mtdsim.PowerCutAfter); then the MCU powers on again (no reply).
	FaultPowerCut
)

// Fault is Config.Fault's answer.
type Fault struct {
	Kind FaultKind
	Ops  int
}

// Stats count what the MCU saw.
type Stats struct {
	Requests int   // SMP requests handled (faulted ones included)
	Boots    int   // resets and power-ons, the first included
	Data     int64 // upload data bytes received
	// Resent is upload data received again for offsets the MCU had acknowledged before (in
	// any reply of the upload of the same image, across resets and power cuts).
	Resent int64
	// BadBoots counts resets after which the primary slot did not hold an image that
	// verifies against Config.Keyring (with a Keyring only): a real MCU would not boot.
	BadBoots int
}

// MCU is the simulated MCU. Its methods may be called from several goroutines.
type MCU struct {
	mu      sync.Mutex
	cfg     Config
	flash   *mtdsim.Flash
	boot    sim.MCUboot
	session session
	stats   Stats
	after   func() // runs after the current reply leaves (a requested reset)
	// acked is the highest offset acknowledged for the image with ackedSha: what Stats.Resent
	// is measured against (the test's view, kept across resets).
	acked    int64
	ackedSha []byte
}

// New powers the MCU on: the primary slot holds cfg.Primary, the rest is erased.
func New(cfg Config) (*MCU, error) {
	cfg = withDefaults(cfg)
	if cfg.SlotSize%int64(cfg.EraseSize) != 0 {
		return nil, fmt.Errorf("mcusim: slot size %d is not a multiple of the erase size %d", cfg.SlotSize, cfg.EraseSize)
	}
	if int64(len(cfg.Primary)) > cfg.SlotSize {
		return nil, fmt.Errorf("mcusim: a %d-byte primary image in a %d-byte slot", len(cfg.Primary), cfg.SlotSize)
	}
	size := 2*cfg.SlotSize + stateBlocks*int64(cfg.EraseSize)
	f, err := mtdsim.NewNOR(int(size), cfg.EraseSize)
	if err != nil {
		return nil, fmt.Errorf("mcusim: %w", err)
	}
	m := &MCU{cfg: cfg, flash: f}
	m.boot = sim.MCUboot{Primary: m.slot(0), Secondary: m.slot(1)}
	if len(cfg.Primary) > 0 {
		if _, err := f.WriteAt(cfg.Primary, 0); err != nil {
			return nil, fmt.Errorf("mcusim: writing the primary image: %w", err)
		}
	}
	return m, m.Reset()
}

func withDefaults(c Config) Config {
	if c.SlotSize == 0 {
		c.SlotSize = DefaultSlotSize
	}
	if c.EraseSize == 0 {
		c.EraseSize = DefaultEraseSize
	}
	if c.MaxLine == 0 {
		c.MaxLine = DefaultMaxLine
	}
	if c.LineSize == 0 {
		c.LineSize = smp.DefaultLineSize
	}
	if c.BufSize == 0 {
		c.BufSize = DefaultBufSize
	}
	return c
}

func (m *MCU) slot(i int) mcuboottrailer.Slot {
	return mcuboottrailer.Slot{Flash: m.flash, Offset: int64(i) * m.cfg.SlotSize, Size: m.cfg.SlotSize,
		EraseSize: m.cfg.EraseSize, WriteSize: writeSize}
}

// Flash is the MCU's flash (slots at 0 and SlotSize, the upload state after them).
func (m *MCU) Flash() *mtdsim.Flash { return m.flash }

// Slot returns a copy of slot i (0 primary, 1 secondary).
func (m *MCU) Slot(i int) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, _ := m.read(m.slot(i).Offset, m.cfg.SlotSize)
	return b
}

// Stats returns the counters.
func (m *MCU) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Reset resets the MCU: power comes back (a cut is disarmed), RAM is lost, MCUboot runs.
func (m *MCU) Reset() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reset()
}

func (m *MCU) reset() error {
	m.flash.PowerOn()
	m.stats.Boots++
	m.after = nil
	erased, err := m.checkSecondary()
	if err != nil {
		return err
	}
	if _, err := m.boot.Reset(); err != nil {
		return fmt.Errorf("mcusim: MCUboot: %w", err)
	}
	m.session = m.loadSession()
	if erased || m.boot.LastSwap != mcuboottrailer.SwapNone {
		// The secondary slot no longer holds the upload: it cannot be resumed.
		if err := m.closeSession(); err != nil {
			return err
		}
	}
	if m.cfg.Keyring != nil {
		data, err := m.read(0, m.cfg.SlotSize)
		if err != nil {
			return err
		}
		if _, err := mcuboot.VerifyTrusted(data, m.cfg.Keyring); err != nil {
			m.stats.BadBoots++
		}
	}
	return nil
}

// checkSecondary erases a secondary image marked for a swap whose signature fails, as
// MCUboot does (only with a Keyring), and says whether it did.
func (m *MCU) checkSecondary() (bool, error) {
	if m.cfg.Keyring == nil {
		return false, nil
	}
	swap, err := mcuboottrailer.State(m.boot.Primary, m.boot.Secondary)
	if err != nil || (swap != mcuboottrailer.SwapTest && swap != mcuboottrailer.SwapPerm) {
		return false, err
	}
	data, err := m.read(m.cfg.SlotSize, m.cfg.SlotSize)
	if err != nil {
		return false, err
	}
	if _, verr := mcuboot.VerifyTrusted(data, m.cfg.Keyring); verr == nil {
		return false, nil
	}
	return true, m.flash.Erase(m.cfg.SlotSize, m.cfg.SlotSize)
}

func (m *MCU) read(off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := m.flash.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("mcusim: reading flash at %d: %w", off, err)
	}
	return b, nil
}

// Running returns the image in the primary slot (nil when none parses).
func (m *MCU) Running() *mcuboot.Image {
	img, _ := mcuboot.Parse(m.Slot(0))
	return img
}

// session is an upload in progress, as kept in the state area: a header block (magic,
// length, sha) and then one 8-byte record per acknowledged offset (the offset and its
// complement); the last intact record wins, a torn one is skipped.
type session struct {
	open bool
	size int64
	sha  []byte
	off  int64
	next int // index of the next record
}

var sessionMagic = []byte("SMPU")

const (
	sessionHeader = 64
	recordSize    = 8
)

func (m *MCU) stateOff() int64 { return 2 * m.cfg.SlotSize }

func (m *MCU) loadSession() session {
	area, err := m.read(m.stateOff(), stateBlocks*int64(m.cfg.EraseSize))
	if err != nil || !bytes.Equal(area[:4], sessionMagic) {
		return session{}
	}
	s := session{open: true, size: int64(binary.LittleEndian.Uint32(area[4:])), sha: bytes.Clone(area[8:40])}
	if crc32.ChecksumIEEE(area[:40]) != binary.LittleEndian.Uint32(area[40:]) {
		return session{}
	}
	if bytes.Equal(s.sha, make([]byte, 32)) {
		s.sha = nil
	}
	for i := 0; sessionHeader+(i+1)*recordSize <= len(area); i++ {
		r := area[sessionHeader+i*recordSize:][:recordSize]
		if bytes.Equal(r, bytes.Repeat([]byte{0xff}, recordSize)) {
			break
		}
		s.next = i + 1
		off, check := binary.LittleEndian.Uint32(r), binary.LittleEndian.Uint32(r[4:])
		if off == ^check && int64(off) <= s.size {
			s.off = int64(off)
		}
	}
	return s
}

// openSession erases the state area and writes a new session's header.
func (m *MCU) openSession(size int64, sha []byte) error {
	if err := m.flash.Erase(m.stateOff(), stateBlocks*int64(m.cfg.EraseSize)); err != nil {
		return err
	}
	m.session = session{}
	h := make([]byte, 44)
	copy(h, sessionMagic)
	binary.LittleEndian.PutUint32(h[4:], uint32(size))
	copy(h[8:40], sha)
	binary.LittleEndian.PutUint32(h[40:], crc32.ChecksumIEEE(h[:40]))
	if _, err := m.flash.WriteAt(h, m.stateOff()); err != nil {
		return err
	}
	m.session = session{open: true, size: size, sha: bytes.Clone(sha)}
	return nil
}

// advance records that the session reached off.
func (m *MCU) advance(off int64) error {
	s := &m.session
	at := int64(sessionHeader + s.next*recordSize)
	if at+recordSize <= stateBlocks*int64(m.cfg.EraseSize) {
		r := make([]byte, recordSize)
		binary.LittleEndian.PutUint32(r, uint32(off))
		binary.LittleEndian.PutUint32(r[4:], ^uint32(off))
		s.next++
		if _, err := m.flash.WriteAt(r, m.stateOff()+at); err != nil {
			return err
		}
	}
	s.off = off
	return nil
}

// closeSession forgets the session (an erase of the secondary slot).
func (m *MCU) closeSession() error {
	m.session = session{}
	return m.flash.Erase(m.stateOff(), stateBlocks*int64(m.cfg.EraseSize))
}

// uploadDone reports whether the secondary slot holds the session's whole image with its sha.
func (m *MCU) uploadMatches() (bool, error) {
	data, err := m.read(m.cfg.SlotSize, m.session.size)
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(data)
	return bytes.Equal(sum[:], m.session.sha), nil
}

var errPower = errors.New("mcusim: power cut")
