package watchdog

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Systemd talks to systemd's service manager through sd_notify datagrams. It
// implements Device for the service watchdog (WatchdogSec= in the unit): Keepalive
// sends "WATCHDOG=1". Each message is sent on a fresh datagram socket, as
// libsystemd's sd_notify does, so a Systemd holds no descriptor and is safe for
// concurrent use.
type Systemd struct {
	socket  string
	timeout atomic.Int64 // time.Duration
}

// NewSystemd returns a notifier for socket (the value of NOTIFY_SOCKET: an absolute
// path, or an abstract name starting with '@', Linux only) and the service watchdog
// timeout (zero when systemd enabled none).
func NewSystemd(socket string, watchdogTimeout time.Duration) (*Systemd, error) {
	switch {
	case socket == "":
		return nil, ErrNoNotifySocket
	case socket[0] == '@':
		if runtime.GOOS != "linux" {
			return nil, fmt.Errorf("watchdog: abstract notify socket %q: %w", socket, ErrUnsupported)
		}
	case socket[0] != '/':
		// e.g. "vsock:..." sockets of recent systemd versions
		return nil, fmt.Errorf("watchdog: notify socket %q: %w", socket, ErrUnsupported)
	}
	if watchdogTimeout < 0 {
		return nil, fmt.Errorf("watchdog: timeout %v: %w", watchdogTimeout, ErrInvalid)
	}
	s := &Systemd{socket: socket}
	s.timeout.Store(int64(watchdogTimeout))
	return s, nil
}

// SystemdFromEnv builds a Systemd from the environment systemd gives a service:
// NOTIFY_SOCKET (required, else ErrNoNotifySocket) and WATCHDOG_USEC/WATCHDOG_PID
// (see ParseWatchdogEnv; without them the watchdog timeout is zero). lookup is
// usually os.LookupEnv and pid os.Getpid().
func SystemdFromEnv(lookup func(string) (string, bool), pid int) (*Systemd, error) {
	socket, _ := lookup("NOTIFY_SOCKET")
	timeout, err := ParseWatchdogEnv(lookup, pid)
	if err != nil && err != ErrWatchdogDisabled {
		return nil, err
	}
	return NewSystemd(socket, timeout)
}

// ParseWatchdogEnv returns the service watchdog timeout systemd set for process pid:
// WATCHDOG_USEC in microseconds, valid only if WATCHDOG_PID is unset or equals pid.
// It returns ErrWatchdogDisabled when there is no watchdog for pid, and an error
// wrapping ErrInvalid for malformed values. Feed at half the timeout (Interval).
func ParseWatchdogEnv(lookup func(string) (string, bool), pid int) (time.Duration, error) {
	usec, ok := lookup("WATCHDOG_USEC")
	if !ok || usec == "" {
		return 0, ErrWatchdogDisabled
	}
	if p, ok := lookup("WATCHDOG_PID"); ok && p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("watchdog: WATCHDOG_PID=%q: %w", p, ErrInvalid)
		}
		if n != pid {
			return 0, ErrWatchdogDisabled
		}
	}
	u, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || u == 0 || u > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0, fmt.Errorf("watchdog: WATCHDOG_USEC=%q: %w", usec, ErrInvalid)
	}
	return time.Duration(u) * time.Microsecond, nil
}

// Interval is how often to feed a watchdog with the given timeout: half of it, the
// interval systemd recommends.
func Interval(timeout time.Duration) time.Duration { return timeout / 2 }

// Notify sends the given "KEY=value" assignments in one datagram, newline-separated.
func (s *Systemd) Notify(assignments ...string) error {
	if len(assignments) == 0 {
		return fmt.Errorf("watchdog: empty notification: %w", ErrInvalid)
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") || strings.Contains(a, "\n") {
			return fmt.Errorf("watchdog: notification %q: %w", a, ErrInvalid)
		}
	}
	msg := strings.Join(assignments, "\n")
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: s.socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("watchdog: sd_notify: %w", err)
	}
	_, werr := conn.Write([]byte(msg))
	cerr := conn.Close()
	if werr != nil {
		return fmt.Errorf("watchdog: sd_notify %q: %w", msg, werr)
	}
	if cerr != nil {
		return fmt.Errorf("watchdog: sd_notify: %w", cerr)
	}
	return nil
}

// Ready sends "READY=1" (start-up finished, Type=notify).
func (s *Systemd) Ready() error { return s.Notify("READY=1") }

// Stopping sends "STOPPING=1".
func (s *Systemd) Stopping() error { return s.Notify("STOPPING=1") }

// Status sends "STATUS=msg"; newlines in msg are replaced by spaces.
func (s *Systemd) Status(msg string) error {
	msg = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(msg)
	return s.Notify("STATUS=" + msg)
}

// Keepalive sends "WATCHDOG=1".
func (s *Systemd) Keepalive() error { return s.Notify("WATCHDOG=1") }

// Trigger sends "WATCHDOG=trigger": systemd acts as if the watchdog had expired,
// without waiting for the timeout.
func (s *Systemd) Trigger() error { return s.Notify("WATCHDOG=trigger") }

// SetTimeout sends "WATCHDOG_USEC=<d in µs>" (systemd 236 or later) and returns d;
// systemd does not acknowledge it. Later Timeout calls return d.
func (s *Systemd) SetTimeout(d time.Duration) (time.Duration, error) {
	if d < time.Microsecond {
		return 0, fmt.Errorf("watchdog: timeout %v: %w", d, ErrInvalid)
	}
	d = d.Truncate(time.Microsecond)
	if err := s.Notify("WATCHDOG_USEC=" + strconv.FormatInt(d.Microseconds(), 10)); err != nil {
		return 0, err
	}
	s.timeout.Store(int64(d))
	return d, nil
}

// Timeout returns the service watchdog timeout, or ErrWatchdogDisabled.
func (s *Systemd) Timeout() (time.Duration, error) {
	t := time.Duration(s.timeout.Load())
	if t <= 0 {
		return 0, ErrWatchdogDisabled
	}
	return t, nil
}

// Close holds no resources and cannot disarm: systemd stops watching the service
// when it exits, and keeps watching (and acts on expiry) while it runs, whatever
// the mode.
func (s *Systemd) Close(mode CloseMode) error {
	if mode != CloseArmed && mode != CloseDisarm {
		return fmt.Errorf("watchdog: close mode %v: %w", mode, ErrInvalid)
	}
	return nil
}
