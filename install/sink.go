package install

import (
	"errors"
	"fmt"
	"io"

	"github.com/aduflash/aduflash/slots"
)

// sink is where the payload goes: a slot writer (slots.Writer has it all), or a dry run's
// discard.
type sink interface {
	io.Writer
	io.ReaderAt
	Finish() error
	Stats() slots.Stats
	VerifyWritten() error
	Close() error
}

// discard is the sink of a dry run: it writes nothing but holds the payload to the size the
// slot writer would (no byte more, none missing).
type discard struct {
	slot string
	size int64
	n    int64
}

func (d *discard) Write(p []byte) (int, error) {
	if rest := d.size - d.n; int64(len(p)) > rest {
		d.n = d.size
		return int(rest), fmt.Errorf("%w: %s: more than the announced %d bytes", slots.ErrTooLarge, d.slot, d.size)
	}
	d.n += int64(len(p))
	return len(p), nil
}

func (d *discard) Finish() error {
	if d.n != d.size {
		return fmt.Errorf("install: dry run into %s: %d of %d bytes", d.slot, d.n, d.size)
	}
	return nil
}

func (d *discard) ReadAt([]byte, int64) (int, error) {
	return 0, errors.New("install: a dry run has nothing to read back")
}

func (d *discard) Stats() slots.Stats   { return slots.Stats{} }
func (d *discard) VerifyWritten() error { return nil }
func (d *discard) Close() error         { return nil }
