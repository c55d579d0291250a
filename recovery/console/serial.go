package console

import "github.com/aduflash/aduflash/internal/errkind"

// ErrSerial: the serial line cannot be used as asked (a rate termios has no constant for, a
// path that is not a tty, an operating system without support here).
var ErrSerial = errkind.New(errkind.Environment, "console: serial line")

// ErrBaud: a baud rate this package cannot set.
var ErrBaud = errkind.New(errkind.Usage, "console: unsupported baud rate")
