package watchdog

import (
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// linuxDevice is a Linux watchdog character device.
type linuxDevice struct {
	mu   sync.Mutex
	f    *os.File // nil once closed
	path string
}

// OpenLinux opens a Linux watchdog device such as /dev/watchdog or /dev/watchdog0.
// Opening starts the timer: the caller must feed it (see Feeder) or the board resets.
func OpenLinux(path string) (Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err) // *os.PathError names the path
	}
	return &linuxDevice{f: f, path: path}, nil
}

// ioctl runs fn on the device's descriptor.
func (d *linuxDevice) ioctl(name string, fn func(fd int) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return fmt.Errorf("watchdog: %s %s: %w", name, d.path, ErrClosed)
	}
	rc, err := d.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("watchdog: %s %s: %w", name, d.path, err)
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("watchdog: %s %s: %w", name, d.path, err)
	}
	if opErr != nil {
		return fmt.Errorf("watchdog: %s %s: %w", name, d.path, opErr)
	}
	return nil
}

// Keepalive issues WDIOC_KEEPALIVE.
func (d *linuxDevice) Keepalive() error {
	return d.ioctl("WDIOC_KEEPALIVE", unix.IoctlWatchdogKeepalive)
}

// SetTimeout issues WDIOC_SETTIMEOUT with d rounded up to whole seconds, then reads
// the timeout in effect back with WDIOC_GETTIMEOUT (x/sys's IoctlSetPointerInt does
// not return the value the driver writes back).
func (d *linuxDevice) SetTimeout(t time.Duration) (time.Duration, error) {
	if t <= 0 {
		return 0, fmt.Errorf("watchdog: timeout %v: %w", t, ErrInvalid)
	}
	secs := (t + time.Second - 1) / time.Second
	if secs > math.MaxInt32 {
		return 0, fmt.Errorf("watchdog: timeout %v: %w", t, ErrInvalid)
	}
	err := d.ioctl("WDIOC_SETTIMEOUT", func(fd int) error {
		return unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, int(secs))
	})
	if err != nil {
		return 0, err
	}
	return d.Timeout()
}

// Timeout issues WDIOC_GETTIMEOUT. The kernel writes a C int, so it is read into 32
// bits (IoctlGetInt would read a 64-bit int, wrong on big-endian 64-bit systems).
func (d *linuxDevice) Timeout() (time.Duration, error) {
	var secs uint32
	err := d.ioctl("WDIOC_GETTIMEOUT", func(fd int) error {
		v, err := unix.IoctlGetUint32(fd, unix.WDIOC_GETTIMEOUT)
		secs = v
		return err
	})
	if err != nil {
		return 0, err
	}
	return time.Duration(int32(secs)) * time.Second, nil
}

// Close closes the device; with CloseDisarm it first writes the magic 'V' so the
// driver stops the timer (ignored by kernels built with CONFIG_WATCHDOG_NOWAYOUT).
func (d *linuxDevice) Close(mode CloseMode) error {
	if mode != CloseArmed && mode != CloseDisarm {
		return fmt.Errorf("watchdog: close mode %v: %w", mode, ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f == nil {
		return fmt.Errorf("watchdog: close %s: %w", d.path, ErrClosed)
	}
	f := d.f
	d.f = nil
	var werr error
	if mode == CloseDisarm {
		if _, err := f.Write([]byte{'V'}); err != nil {
			werr = fmt.Errorf("watchdog: magic close %s: %w", d.path, err)
		}
	}
	if err := f.Close(); err != nil && werr == nil {
		werr = fmt.Errorf("watchdog: close %s: %w", d.path, err)
	}
	return werr
}
