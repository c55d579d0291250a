// Package app is aduagent's command line: the device binary's daemon (run), manual
// install, status and manual mark-good / mark-bad commands. main only calls Run; everything else lives here so that
// tests drive the same code the binary runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/slots"
)

// DefaultConfig is the device configuration file read unless --config names another.
const DefaultConfig = cliapp.DefaultDeviceConfig

// env is what every command may use besides its flags and arguments.
type env struct {
	stdout, stderr io.Writer
}

// New builds the aduagent command tree writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	e := &env{stdout: stdout, stderr: stderr}
	a := &cli.App{
		Name:  "aduagent",
		Usage: "the device's update agent: the Device Update daemon, manual installs, slot and bootloader state, mark-good / mark-bad",
		Description: `All commands read the device configuration (--config, examples/aduagent.toml documents
every key): the [slots] section (slots, banks, how the running bank is found), the
[bootloader] section (the boot backend) and the [agent] section (IoT Hub connection, device
identity, trusted keys, health checks, the journal's state_dir).

The running bank comes from the kernel command line (adu.slot=B), unless the [slots]
section says active = "bootloader". Where aduagent does not run on the device's own kernel
(a workstation, a container, a simulated device), --cmdline-file or the [slots] section's
cmdline_file names a file that stands in for /proc/cmdline: after "aduagent install
--no-reboot", writing adu.slot=B into it plays the reboot into bank B, and the next
"aduagent run" health-checks and confirms B.

Exit codes: 0 ok, 1 invalid input or a refused change (bad config, invalid bootloader
state, marking the wrong bank, a refused image), 2 usage error, 3 I/O or environment
error (missing config file, storage that cannot be read, running bank that cannot be told).

EXAMPLE:
   aduagent run
   aduagent install --no-reboot rootfs-1.2.0.aduimg
   aduagent status
   aduagent --config /etc/aduflash/aduagent.toml status --json
   aduagent mark-good
   aduagent mark-bad B`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: DefaultConfig, Usage: "device config `FILE` (TOML: [slots], [bootloader], [agent])", TakesFile: true},
			&cli.StringFlag{Name: "cmdline-file", Usage: "read the kernel command line from `FILE` instead of the [slots] section's cmdline_file (default /proc/cmdline): aduagent on a workstation, in a container or on a simulated device", TakesFile: true},
			// Roots of a fake or mounted system, for tests and offline use.
			&cli.StringFlag{Name: "dev-root", Hidden: true},
			&cli.StringFlag{Name: "sysfs-root", Hidden: true},
		},
		Commands: []*cli.Command{
			e.runCommand(),
			e.installCommand(),
			e.statusCommand(),
			e.markGoodCommand(),
			e.markBadCommand(),
		},
	}
	// The global flags work after the command name too (aduagent run --config F): each
	// command gets copies without defaults; globalFlag reads the nearest one that was given.
	for _, cmd := range a.Commands {
		cmd.Flags = append(cmd.Flags,
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "device config `FILE` (as the global --config)", TakesFile: true},
			&cli.StringFlag{Name: "cmdline-file", Usage: "kernel command line `FILE` (as the global --cmdline-file)", TakesFile: true},
			&cli.StringFlag{Name: "dev-root", Hidden: true},
			&cli.StringFlag{Name: "sysfs-root", Hidden: true})
	}
	return cliapp.New(a, stdout, stderr)
}

// globalFlag returns a global flag given after the command name, else before it (or its
// default).
func globalFlag(c *cli.Context, name string) string {
	for _, x := range c.Lineage() {
		if v := x.String(name); v != "" {
			return v
		}
	}
	return ""
}

// Run runs aduagent with args (args[0] is the program name) and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cliapp.Run(ctx, New(stdout, stderr), args, stderr)
}

// device is the configured device: its slot layout and, when it could be opened, its
// bootloader backend.
type device struct {
	path    string
	slots   *slots.Config
	boot    bootloader.Config
	layout  *slots.Layout
	backend bootloader.Backend // nil when bootErr is set
	bootErr error              // opening the backend failed
	closeFn func() error
}

func (d *device) close() {
	if d.closeFn != nil {
		d.closeFn()
	}
}

// loadDevice reads the config's [slots] and [bootloader] sections and opens the backend.
// Config errors end the command; a backend that cannot be opened is kept in bootErr, for
// status to report.
func loadDevice(c *cli.Context) (*device, error) {
	d := &device{path: globalFlag(c, "config")}
	var err error
	if d.slots, err = slots.LoadConfig(d.path); err != nil {
		return nil, err
	}
	if d.boot, err = bootloader.LoadConfig(d.path); err != nil {
		return nil, err
	}
	var opts []bootloader.OpenOption
	if r := globalFlag(c, "dev-root"); r != "" {
		opts = append(opts, bootloader.WithDevRoot(r))
	}
	if r := globalFlag(c, "sysfs-root"); r != "" {
		opts = append(opts, bootloader.WithSysfsRoot(r))
	}
	senv := slots.Env{Dev: globalFlag(c, "dev-root"), Sysfs: globalFlag(c, "sysfs-root"), Cmdline: globalFlag(c, "cmdline-file")}
	backend, cl, err := bootloader.Open(d.boot, opts...)
	if err != nil {
		d.bootErr = fmt.Errorf("opening the %s bootloader backend: %w", d.boot.Type, err)
	} else {
		d.backend, d.closeFn = backend, cl
		senv.Bootloader = bootloader.Banks{Backend: backend}
	}
	d.layout = slots.NewLayout(d.slots, senv)
	return d, nil
}

// checkBank refuses a bank the bootloader section does not configure (usage error).
func (d *device) checkBank(bank string) error {
	for _, b := range d.boot.Banks {
		if b == bank {
			return nil
		}
	}
	return exitcode.Usagef("unknown bank %q (configured: %v)", bank, d.boot.Banks)
}

// exists reports whether path exists (errors other than "not there" count as existing, so
// that the caller's own access reports them).
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
