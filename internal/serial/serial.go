// Package serial opens serial lines for the host tools and the agent: a tty (or a
// pseudo-terminal) in raw mode, 8N1, no flow control, at a given rate (Linux termios; the
// other systems refuse every line). OpenPTY makes a pseudo-terminal pair, the stand-in for a
// serial line that simulators and tests serve.
package serial

import (
	"errors"
	"os"

	"github.com/aduflash/aduflash/internal/errkind"
)

// ErrSerial: the serial line cannot be used as asked (a rate termios has no constant for, a
// path that is not a tty, an operating system without support here).
var ErrSerial = errkind.New(errkind.Environment, "serial line")

// ErrBaud: a baud rate this package cannot set.
var ErrBaud = errkind.New(errkind.Usage, "unsupported baud rate")

// PTY is a pseudo-terminal pair (OpenPTY).
type PTY struct {
	Master *os.File // the device's side
	Path   string   // the slave's path, /dev/pts/N
	slave  *os.File
}

// Close closes both sides.
func (p *PTY) Close() error {
	err := p.Master.Close()
	if p.slave != nil {
		err = errors.Join(err, p.slave.Close())
	}
	return err
}
