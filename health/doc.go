// Package health runs the health checks an update agent performs after booting into a
// newly installed slot, and turns their outcome into a verdict the caller can act on
// (confirm the slot and report success, or mark it bad, report Failed and reboot into
// the good slot).
//
// Scope: the Check configuration (argv, per-attempt timeout, retries with a delay,
// extra environment), validation of that configuration (Validate), running the checks
// (Run) and the Report they produce. Boot-slot bookkeeping, reporting to the cloud and
// rebooting belong to the caller; keeping a watchdog fed while healthy belongs to
// package watchdog.
//
// Behaviour:
//   - Checks run one after another, in the configured order. Health checks on a device
//     often depend on each other (network before a service probe), a small board should
//     not start every probe at once, and StopOnFailure is only meaningful in order.
//     The total time is bounded by the context's deadline.
//   - A command is an argv, never a shell line. Each attempt has its own timeout (the
//     check's Timeout, else Options.DefaultTimeout); on timeout or cancellation the
//     whole process group of the command is killed with SIGKILL on Linux (the command
//     runs with Setpgid), so children it started die with it. On other systems only the
//     command itself is killed, and Options.WaitDelay bounds how long a surviving
//     descendant can keep the output pipe open.
//   - A failed attempt is retried Retries times, RetryDelay apart. Stdout and stderr of
//     the last attempt are captured together, keeping only the last Options.OutputLimit
//     bytes (4 KiB by default).
//   - A failing check does not stop the others unless Options.StopOnFailure is set;
//     checks that were not run are reported with Skipped set.
//   - Run returns an error only for misconfiguration (ErrNoCommand, ErrNoName,
//     ErrDuplicateName, ErrInvalid). A check that cannot even be started (binary
//     missing) is a failed check, not an error. If ctx ends before every check has a
//     verdict, the Report is unhealthy and Interrupted: the caller tells an expired
//     overall deadline (a hang: treat as unhealthy) from a cancellation (shutdown: no
//     verdict) with ctx.Err().
//
// Dependencies are passed in: the function that runs one attempt (Options.Exec, default
// ExecCommand), the clock (Options.Clock) and the base environment (Options.BaseEnv).
// The package never logs, never panics and keeps no package-level mutable state.
package health
