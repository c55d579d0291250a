package mtdsim

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/aduflash/aduflash/mtd"
)

// medium is what Flash and Block share: the lock, the content, the power-cut state, the
// randomness and the armed lies, with the methods that touch nothing else.
type medium struct {
	mu   sync.Mutex
	data []byte
	pw   power
	rng  *rand.Rand
	lies lies
}

func newMedium(data []byte, seed uint64) medium {
	return medium{data: data, pw: newPower(), rng: newRand(seed)}
}

// ReadAt copies the content; at the end of the device it returns io.EOF.
func (m *medium) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.pw.check(); err != nil {
		return 0, err
	}
	if off < 0 || off > int64(len(m.data)) {
		return 0, fmt.Errorf("mtdsim: read at %#x (size %#x): %w", off, len(m.data), mtd.ErrOutOfRange)
	}
	n := copy(p, m.data[off:])
	if k, err := m.lies.read(p[:n], off); k < n {
		return k, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Lie makes reads of a range return other bytes than the device holds (see Lie). Lies add
// up and last for the life of the device (they are not part of a Snapshot).
func (m *medium) Lie(l Lie) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lies.arm(l, m.data)
}

// synced fails after a power cut, and else starts the AfterSync lies whose range was
// written. The caller holds mu.
func (m *medium) synced() error {
	if err := m.pw.check(); err != nil {
		return err
	}
	m.lies.synced()
	return nil
}

// PowerCutAfter arms a power cut: n more operations (on a Block: sector writes) complete,
// the next one is torn. It replaces any earlier arming.
func (m *medium) PowerCutAfter(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pw.arm(int64(max(n, 0)), -1)
}

// PowerCutAfterBytes arms a power cut after n more written bytes (see package doc).
func (m *medium) PowerCutAfterBytes(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pw.arm(-1, max(n, 0))
}

// PowerOn restores power after a cut and disarms any pending cut.
func (m *medium) PowerOn() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pw.on()
}

// PoweredOff reports whether a power cut happened and PowerOn has not been called.
func (m *medium) PoweredOff() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pw.off
}

// Bytes returns a copy of the whole content (on a Flash, bad blocks included).
func (m *medium) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.data)
}
