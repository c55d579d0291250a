// Package app is aduhub's command line: the local IoT Hub + Device Update stand-in (serve,
// device, import, deploy, cancel, retry, status) and the end-to-end demo. main only calls
// Run; everything else lives here so that tests drive the same code the binary runs.
package app

import (
	"context"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
)

// env is what every command may use besides its flags and arguments.
type env struct {
	stdout, stderr io.Writer
}

// New builds the aduhub command tree writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	e := &env{stdout: stdout, stderr: stderr}
	return cliapp.New(&cli.App{
		Name:  "aduhub",
		Usage: "a local IoT Hub + Device Update stand-in, and the end-to-end demo",
		Description: `Exit codes: 0 ok, 1 invalid input or a step of the demo that did not happen as
described, 2 usage error, 3 I/O or environment error.

EXAMPLE:
   aduhub demo
   aduhub demo --devices 100
   aduhub serve &
   aduhub device add dev1
   aduhub import --manifest contoso.toaster.2.0.importmanifest.json rootfs-2.0.aduimg
   aduhub deploy --update contoso/toaster/2.0
   aduhub status`,
		Commands: []*cli.Command{
			e.demoCommand(),
			e.serveCommand(),
			e.deviceCommand(),
			e.enrollmentCommand(),
			e.importCommand(),
			e.deployCommand(),
			e.cancelCommand(),
			e.retryCommand(),
			e.statusCommand(),
			e.logsCommand(),
		},
	}, stdout, stderr)
}

// Run runs aduhub with args (args[0] is the program name) and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cliapp.Run(ctx, New(stdout, stderr), args, stderr)
}
