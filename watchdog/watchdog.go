package watchdog

import (
	"errors"
	"fmt"
	"time"

	"github.com/aduflash/aduflash/internal/clock"
	"github.com/aduflash/aduflash/internal/enumname"
)

// Sentinel errors.
var (
	// ErrUnsupported: the operation does not exist on this system or device. It
	// also matches errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("watchdog: %w", errors.ErrUnsupported)
	// ErrInvalid: an invalid argument or configuration.
	ErrInvalid = errors.New("watchdog: invalid argument")
	// ErrClosed: the device was already closed.
	ErrClosed = errors.New("watchdog: device closed")
	// ErrUnhealthy: the Feeder stopped feeding because healthy() returned false.
	ErrUnhealthy = errors.New("watchdog: unhealthy, feeding stopped")
	// ErrStalled: the Feeder stopped feeding because Beat was not called in time.
	ErrStalled = errors.New("watchdog: main loop stalled, feeding stopped")
	// ErrNoNotifySocket: NOTIFY_SOCKET is not set (not started by systemd with
	// Type=notify or NotifyAccess=).
	ErrNoNotifySocket = errors.New("watchdog: NOTIFY_SOCKET not set")
	// ErrWatchdogDisabled: systemd did not enable a watchdog for this process
	// (WATCHDOG_USEC unset, or WATCHDOG_PID names another process).
	ErrWatchdogDisabled = errors.New("watchdog: systemd watchdog not enabled for this process")
)

// CloseMode tells Device.Close whether to stop the watchdog.
type CloseMode int

const (
	// CloseArmed closes the device and leaves the timer running: unless something
	// opens and feeds it again, the board resets when it expires.
	CloseArmed CloseMode = iota
	// CloseDisarm stops the timer before closing (the "magic close" on Linux).
	CloseDisarm
)

var closeModeNames = []string{CloseArmed: "armed", CloseDisarm: "disarm"}

func (m CloseMode) String() string { return enumname.Name(m, "CloseMode", closeModeNames) }

// Device is a watchdog timer.
type Device interface {
	// Keepalive restarts the timer.
	Keepalive() error
	// SetTimeout asks for a new timeout and returns the one actually in effect
	// (hardware rounds to its own granularity).
	SetTimeout(d time.Duration) (time.Duration, error)
	// Timeout returns the current timeout.
	Timeout() (time.Duration, error)
	// Close releases the device; mode says whether the timer keeps running.
	Close(mode CloseMode) error
}

// Opener opens a watchdog device by path; OpenLinux is one.
type Opener func(path string) (Device, error)

// Clock is the time source of a Feeder.
type Clock = clock.Clock

// SystemClock is the Clock backed by package time.
type SystemClock = clock.System
