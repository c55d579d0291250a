package console

import (
	"os"

	"github.com/aduflash/aduflash/internal/serial"
)

// ErrSerial: the serial line cannot be used as asked (a rate termios has no constant for, a
// path that is not a tty, an operating system without support here).
var ErrSerial = serial.ErrSerial

// ErrBaud: a baud rate this package cannot set.
var ErrBaud = serial.ErrBaud

// Open opens the serial line at path (or a pseudo-terminal) for exclusive use: raw mode, 8
// data bits, no parity, one stop bit, no flow control, the modem lines ignored, at baud.
func Open(path string, baud int) (*os.File, error) { return serial.Open(path, baud) }
