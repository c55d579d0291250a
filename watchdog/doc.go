// Package watchdog keeps a watchdog fed only while the update agent is healthy, so
// that a hang or a failed boot of a new slot ends in a reset (and the bootloader's
// rollback) instead of a board that stays up running broken software.
//
// Scope:
//   - Device, the small interface a watchdog offers: Keepalive, SetTimeout, Timeout,
//     Close(CloseArmed|CloseDisarm).
//   - OpenLinux, the Linux watchdog character device (/dev/watchdog, /dev/watchdogN)
//     through golang.org/x/sys/unix ioctls (WDIOC_KEEPALIVE, WDIOC_SETTIMEOUT,
//     WDIOC_GETTIMEOUT). Opening the device starts the timer. Close(CloseDisarm)
//     writes the magic character 'V' before closing, which stops the timer unless the
//     kernel was built with nowayout; Close(CloseArmed) leaves it running. On other
//     systems OpenLinux returns ErrUnsupported.
//   - Systemd, the systemd service watchdog alternative (WatchdogSec= in the unit):
//     sd_notify datagrams on $NOTIFY_SOCKET ("WATCHDOG=1", "READY=1", "STATUS=..."),
//     abstract socket names starting with '@' included, and the timeout read from
//     $WATCHDOG_USEC / $WATCHDOG_PID (ParseWatchdogEnv); feed at half the timeout.
//     Systemd also satisfies Device.
//   - Feeder, which feeds a Device every interval while a healthy() predicate holds and
//     the agent's main loop keeps calling Beat (stall detection), and stops feeding
//     for good as soon as either fails, so the hardware (or systemd) resets the board.
//
// What to do after a reset (mark a slot bad, report Failed) belongs to the caller;
// running the health checks belongs to package health.
//
// Dependencies are passed in: the device (or an Opener), the clock, the environment
// lookup. Every error wraps an exported sentinel (ErrUnsupported, ErrInvalid,
// ErrClosed, ErrUnhealthy, ErrStalled, ErrNoNotifySocket, ErrWatchdogDisabled) for
// errors.Is. Linux-only code lives in _linux.go files. The package never logs, never
// panics and keeps no package-level mutable state.
package watchdog
