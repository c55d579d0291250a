package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/watchdog"
)

// Daemon timing.
const (
	// stallTimeout: the watchdogs stop being fed when the agent's main loop has not beaten
	// for this long (it beats every few seconds; a report with retries can take a minute).
	stallTimeout = 3 * time.Minute
	// rebootWait: after the reboot command, how long run waits to be stopped by the
	// shutdown before it gives up (exit 3; systemd restarts it, and its Boot asks again).
	rebootWait = 5 * time.Minute
	// rebootCommandTimeout bounds the reboot command itself.
	rebootCommandTimeout = 2 * time.Minute
	// maxDialBackoff caps the pause between connection attempts to IoT Hub.
	maxDialBackoff = 2 * time.Minute
)

func (e *env) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "the daemon: follow the Device Update service, install deployments, confirm or roll back after a reboot",
		ArgsUsage: " ",
		Description: `Runs the update agent until it is stopped (SIGTERM, SIGINT):
  1. opens the slots, the bootloader and the agent's journal (the [slots], [bootloader] and
     [agent] sections of the config);
  2. finishes what the last start left: after booting into a pending bank it runs the
     [[agent.health_check]] entries and confirms the bank, or marks it bad and reboots
     into the old one; a rolled-back update is recorded as failed;
  3. connects to IoT Hub (agent.connection_string_file, SAS or X.509; always over TLS, to
     the connection string's host or agent.hub_address; MQTT or, with agent.websocket, MQTT
     over WebSockets) and reports the device's properties;
  4. follows the deviceUpdate desired properties: verifies each deployment's manifest
     signature, streams its files into the spare bank's slots (resuming after a power cut),
     marks the bank pending and runs agent.reboot_command.
After the reboot command it waits to be stopped by the shutdown. While the agent is healthy
it feeds agent.watchdog_device and, with agent.systemd_watchdog, systemd's watchdog
(WatchdogSec=, Type=notify); it stops feeding when a new bank fails its checks or the main
loop hangs. Connection failures are retried with backoff. Logs go to stderr (no
timestamps and with syslog priorities when run by systemd), at agent.log_level.

Exit codes: 0 stopped by a signal (also while waiting for the reboot); 1 invalid config
or a refused state (corrupt journal); 2 usage error; 3 I/O or environment error (config,
key or certificate files that cannot be read, bootloader storage, a reboot that did not
happen).

EXAMPLE:
   aduagent run
   aduagent --config /etc/aduflash/aduagent.toml run
   systemctl enable --now aduagent.service   # examples/systemd/aduagent.service`,
		Action: e.run,
	}
}

// daemon is one `aduagent run`.
type daemon struct {
	cfg    agent.Config
	log    *slog.Logger
	ag     *agent.Agent
	beats  []func()
	closes []func(clean bool)
}

func (dm *daemon) beat() {
	for _, b := range dm.beats {
		b()
	}
}

func (e *env) run(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	path := globalFlag(c, "config")
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		return err
	}
	dm := &daemon{cfg: cfg, log: newLogger(e.stderr, cfg.Level(), os.Getenv("JOURNAL_STREAM") != "")}
	// Check the connection settings before touching anything.
	cn, err := cfg.Connector(dm.log)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dm.warnSecretsReadable(path, cn.Hub)
	cn.Hub.Logger = dm.log.With("component", "iothub")
	cn.Hub.OnConnectionChange = func(up bool, err error) {
		if up {
			dm.log.Info("connected to IoT Hub", "address", cn.Hub.Address)
		} else {
			dm.log.Warn("IoT Hub connection lost", "err", err)
		}
	}
	if cn.Proxy != "" {
		dm.log.Info("connecting through a proxy, MQTT over WebSockets", "proxy", cn.Proxy)
	}

	o, d, err := agentOptions(c, cfg, dm.log)
	if err != nil {
		return err
	}
	defer d.close()
	o.DeviceName = deviceID(cn) // log uploads are filed under it
	o.Reboot = rebootFunc(cfg.RebootCommand, dm.log)
	o.Heartbeat = dm.beat // the feeders, started below before anything runs
	if dm.ag, err = agent.New(o); err != nil {
		return err
	}
	defer dm.ag.Close()

	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
	defer stop()
	feedCtx, stopFeeding := context.WithCancel(context.Background())
	var feeders sync.WaitGroup
	clean := false
	defer func() {
		stopFeeding()
		feeders.Wait()
		for _, cl := range dm.closes {
			cl(clean)
		}
	}()
	notify := dm.watchdogs(feedCtx, &feeders)
	notify("READY=1", "STATUS=starting")

	// Finish what the last start left (health checks, confirm or roll back).
	err = dm.busy(ctx, cfg.HealthTimeout+time.Minute, func() error { return dm.ag.Boot(ctx) })
	if err == nil {
		notify("STATUS=connecting to IoT Hub")
		var cl *iothub.Client
		err = dm.busy(ctx, 0, func() error {
			var derr error
			cl, derr = dm.dial(ctx, cn)
			return derr
		})
		if err == nil {
			notify("STATUS=running")
			dm.log.Info("agent running", "device", deviceID(cn), "model", cfg.ModelID, "version", cliapp.Version)
			err = dm.ag.Run(ctx, cl)
			cl.Close()
		}
	}
	switch {
	case errors.Is(err, agent.ErrRebooting):
		notify("STATUS=rebooting")
		err = dm.waitReboot(ctx)
		if err == nil {
			clean = true
			notify("STOPPING=1")
		}
		return err
	case ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, iothub.ErrConnect)):
		dm.log.Info("stopped")
		clean = true
		notify("STOPPING=1")
		return nil
	}
	return err
}

// warnSecretsReadable warns about each file holding the device's secret (the connection
// string with its key, inline in the config or in its file; the X.509 private key) that
// others than its owner may read.
func (dm *daemon) warnSecretsReadable(configPath string, hc iothub.Config) {
	warn := func(file, msg string) {
		if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
			dm.log.Warn(msg, "file", file, "mode", fi.Mode().Perm().String())
		}
	}
	if id, err := iothub.ParseConnectionString(hc.ConnectionString); err == nil && id.SharedAccessKey != "" {
		if f := dm.cfg.ConnectionStringFile; f != "" {
			warn(f, "the connection string file is readable by others; chmod 600 it")
		} else {
			warn(configPath, "the config holds the device key (agent.connection_string) and is readable by others; chmod 600 it, or move the string to agent.connection_string_file (mode 600)")
		}
	}
	for _, f := range []string{dm.cfg.SymmetricKeyFile, dm.cfg.GroupKeyFile} {
		if f != "" {
			warn(f, "the DPS key file is readable by others; chmod 600 it")
		}
	}
	if f := dm.cfg.X509Key; f != "" {
		warn(f, "the device's private key file (agent.x509_key) is readable by others; chmod 600 it")
	}
}

// agentOptions opens the device (slots, bootloader) and fills the agent's options from
// the config: everything but Reboot, Heartbeat and the like.
func agentOptions(c *cli.Context, cfg agent.Config, log *slog.Logger) (agent.Options, *device, error) {
	o, err := cfg.Options()
	if err != nil {
		return o, nil, err
	}
	if o.Keyring, err = cfg.LoadKeyring(); err != nil {
		return o, nil, err
	}
	d, err := loadDevice(c)
	if err != nil {
		return o, nil, err
	}
	if d.bootErr != nil {
		d.close()
		return o, nil, d.bootErr
	}
	o.Layout, o.Bootloader, o.Logger, o.HTTP = d.layout, d.backend, log, cfg.HTTPClient()
	o.AduVer = agent.AduVer(cliapp.Version)
	if o.MCUKeyrings, err = agent.LoadMCUKeyrings(d.layout.Config); err != nil {
		d.close()
		return o, nil, err
	}
	return o, d, nil
}

// watchdogs opens the configured watchdogs and starts feeding them; it returns the
// sd_notify function (a no-op outside systemd).
func (dm *daemon) watchdogs(ctx context.Context, wg *sync.WaitGroup) func(...string) {
	healthy := func() bool { return dm.ag.Healthy() }
	start := func(name string, dev watchdog.Device, interval time.Duration) {
		f := watchdog.NewFeeder(dev, interval, healthy, nil, watchdog.WithStallTimeout(stallTimeout))
		dm.beats = append(dm.beats, f.Beat)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.Run(ctx); err != nil {
				dm.log.Error("watchdog: feeding stopped; the device will reset", "watchdog", name, "err", err)
			}
		}()
	}
	notify := func(...string) {}
	if sock := os.Getenv("NOTIFY_SOCKET"); sock != "" {
		sd, err := watchdog.SystemdFromEnv(os.LookupEnv, os.Getpid())
		if err != nil {
			dm.log.Warn("cannot talk to systemd", "NOTIFY_SOCKET", sock, "err", err)
		} else {
			notify = func(a ...string) {
				if err := sd.Notify(a...); err != nil {
					dm.log.Debug("sd_notify", "err", err)
				}
			}
			if dm.cfg.SystemdWatchdog {
				if t, _ := sd.Timeout(); t > 0 {
					start("systemd", sd, watchdog.Interval(t))
					dm.log.Info("feeding systemd's watchdog", "timeout", t)
				} else {
					dm.log.Warn("systemd_watchdog is set, but systemd enabled no watchdog (WatchdogSec= in the unit)")
				}
			}
		}
	} else if dm.cfg.SystemdWatchdog {
		dm.log.Warn("systemd_watchdog is set, but the agent was not started by systemd (no NOTIFY_SOCKET)")
	}
	if p := dm.cfg.WatchdogDevice; p != "" {
		dev, err := watchdog.OpenLinux(p)
		if err != nil {
			dm.log.Error("cannot open the watchdog device; running without it", "device", p, "err", err)
			return notify
		}
		if t := dm.cfg.WatchdogTimeout; t > 0 {
			if got, err := dev.SetTimeout(t); err != nil {
				dm.log.Warn("cannot set the watchdog timeout", "device", p, "timeout", t, "err", err)
			} else if got != t {
				dm.log.Info("watchdog timeout rounded by the device", "device", p, "asked", t, "got", got)
			}
		}
		interval := 5 * time.Second
		if t, err := dev.Timeout(); err == nil && t > 0 {
			interval = watchdog.Interval(t)
		}
		start(p, dev, interval)
		dm.closes = append(dm.closes, func(clean bool) {
			mode := watchdog.CloseArmed
			if clean {
				mode = watchdog.CloseDisarm
			}
			if err := dev.Close(mode); err != nil {
				dm.log.Warn("closing the watchdog", "device", p, "mode", mode.String(), "err", err)
			}
		})
		dm.log.Info("feeding the watchdog device", "device", p, "interval", interval)
	}
	return notify
}

// busy runs fn while beating the watchdogs (the agent's main loop is not running yet), for
// at most limit (0: as long as fn runs).
func (dm *daemon) busy(ctx context.Context, limit time.Duration, fn func() error) error {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var deadline <-chan time.Time
		if limit > 0 {
			deadline = time.After(limit)
		}
		for {
			dm.beat()
			select {
			case <-done:
				return
			case <-deadline:
				dm.log.Error("still busy; no longer feeding the watchdog", "after", limit)
				return
			case <-t.C:
			}
		}
	}()
	defer close(done)
	return fn()
}

// dial connects to IoT Hub (registering with DPS first if so configured), retrying
// failures other than the settings' with backoff until ctx ends.
func (dm *daemon) dial(ctx context.Context, cn *agent.Connector) (*iothub.Client, error) {
	backoff := time.Second
	for {
		cl, err := cn.Dial(ctx)
		if err == nil {
			return cl, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, agent.ErrConfig) {
			return nil, err
		}
		args := []any{"in", backoff, "err", err}
		if h := tlsHint(err); h != "" {
			args = append(args, "hint", h)
		}
		dm.log.Warn("cannot connect to IoT Hub; retrying", args...)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxDialBackoff)
	}
}

// tlsHint says which setting to look at when the server's certificate was refused.
func tlsHint(err error) string {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return "the server's certificate is not signed by a CA the agent trusts: agent.ca_file (for aduhub serve: its data folder's ca/ca.pem), else the built-in Azure roots"
	case errors.As(err, &he):
		return "the server's certificate is not valid for the host dialled (agent.hub_address, else the connection string's GatewayHostName or HostName)"
	}
	return ""
}

// waitReboot waits for the shutdown that the reboot command started.
func (dm *daemon) waitReboot(ctx context.Context) error {
	dm.log.Info("waiting for the reboot")
	err := dm.busy(ctx, 0, func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(rebootWait):
			return exitcode.WithCode(exitcode.IO, fmt.Errorf("the device did not reboot within %v of the reboot command %q", rebootWait, dm.cfg.RebootCommand))
		}
	})
	if err == nil {
		dm.log.Info("stopped for the reboot")
	}
	return err
}

// rebootFunc runs argv to restart the device. The command runs to its end (or
// rebootCommandTimeout) even when the agent is stopped meanwhile: the SIGTERM of the very
// shutdown it started must not kill it halfway, nor turn a reboot into an error.
func rebootFunc(argv []string, log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rebootCommandTimeout)
		defer cancel()
		log.Info("running the reboot command", "command", argv)
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			msg := strings.TrimSpace(string(out))
			if len(msg) > 300 {
				msg = "…" + msg[len(msg)-300:]
			}
			if msg != "" {
				return fmt.Errorf("reboot command %q: %w: %s", argv, err, msg)
			}
			return fmt.Errorf("reboot command %q: %w", argv, err)
		}
		return nil
	}
}

// deviceID names the device in logs: its connection string's device id, or its DPS
// registration id.
func deviceID(cn *agent.Connector) string {
	if cn.DPS != nil {
		return cn.DPS.RegistrationID
	}
	if id, err := iothub.ParseConnectionString(cn.Hub.ConnectionString); err == nil {
		return id.DeviceID
	}
	return ""
}

// newLogger logs to w as key=value lines. Under journald ($JOURNAL_STREAM) the time is left
// out (the journal has its own) and each line starts with its syslog priority ("<6>"),
// which journald strips and records.
func newLogger(w io.Writer, level slog.Level, journal bool) *slog.Logger {
	if !journal {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	}
	pw := &prefixWriter{out: w}
	h := slog.NewTextHandler(pw, &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	return slog.New(&journalHandler{inner: h, w: pw})
}

type prefixWriter struct {
	mu     sync.Mutex
	out    io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.out, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// journalHandler sets the priority prefix of each record's line.
type journalHandler struct {
	inner slog.Handler
	w     *prefixWriter
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	switch {
	case r.Level >= slog.LevelError:
		h.w.prefix = "<3>"
	case r.Level >= slog.LevelWarn:
		h.w.prefix = "<4>"
	case r.Level >= slog.LevelInfo:
		h.w.prefix = "<6>"
	default:
		h.w.prefix = "<7>"
	}
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), w: h.w}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), w: h.w}
}
