package serial

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

var bauds = map[int]uint32{
	9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600,
	115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800, 500000: unix.B500000,
	576000: unix.B576000, 921600: unix.B921600, 1000000: unix.B1000000, 1500000: unix.B1500000,
	2000000: unix.B2000000, 3000000: unix.B3000000, 4000000: unix.B4000000,
}

// Open opens the serial line at path (or a pseudo-terminal) for exclusive use: raw mode, 8
// data bits, no parity, one stop bit, no flow control, the modem lines ignored, at baud.
func Open(path string, baud int) (*os.File, error) {
	speed, ok := bauds[baud]
	if !ok {
		return nil, fmt.Errorf("%w: %d (use 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000, 1500000 or up to 4000000)", ErrBaud, baud)
	}
	// O_NONBLOCK: the open must not wait for a carrier; Go's poller then serves the reads.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSerial, err)
	}
	if err := setRaw(int(f.Fd()), speed); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrSerial, path, err)
	}
	return f, nil
}

func setRaw(fd int, speed uint32) error {
	if err := setTermios(fd, speed); err != nil {
		return err
	}
	if err := unix.IoctlSetInt(fd, unix.TIOCEXCL, 0); err != nil {
		return fmt.Errorf("exclusive use: %w", err)
	}
	return unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIOFLUSH)
}

// setTermios puts a terminal in raw mode, 8N1, no flow control, at speed.
func setTermios(fd int, speed uint32) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("not a terminal: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CRTSCTS | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | speed
	t.Ispeed, t.Ospeed = speed, speed
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("setting raw mode: %w", err)
	}
	return nil
}

// OpenPTY opens a new pseudo-terminal: its master side for the program that plays the
// device, and its slave, opened here too and kept open in raw mode so that the master never
// sees a hang-up between two clients. Clients open PTY.Path as they would a serial line.
func OpenPTY() (*PTY, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSerial, err)
	}
	p := &PTY{Master: m}
	if err := p.openSlave(); err != nil {
		m.Close()
		return nil, fmt.Errorf("%w: pseudo-terminal: %w", ErrSerial, err)
	}
	return p, nil
}

func (p *PTY) openSlave() error {
	// Through SyscallConn, not Fd, so that the master stays in Go's poller (Close ends a Read).
	rc, err := p.Master.SyscallConn()
	if err != nil {
		return err
	}
	var n uint32
	cerr := rc.Control(func(fd uintptr) {
		if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err != nil {
			err = fmt.Errorf("unlocking: %w", err)
			return
		}
		if n, err = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN); err != nil {
			err = fmt.Errorf("its number: %w", err)
		}
	})
	if err = errors.Join(cerr, err); err != nil {
		return err
	}
	p.Path = fmt.Sprintf("/dev/pts/%d", n)
	if p.slave, err = os.OpenFile(p.Path, os.O_RDWR|unix.O_NOCTTY, 0); err != nil {
		return err
	}
	return setTermios(int(p.slave.Fd()), unix.B115200)
}
