// Package app is aduimport's command line: signing images, MCUboot images and ADU import
// manifests on a build host or in CI. main only calls Run; everything else lives here so that
// tests drive the same code the binary runs.
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

// New builds the aduimport command tree writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	e := &env{stdout: stdout, stderr: stderr}
	return cliapp.New(&cli.App{
		Name:  "aduimport",
		Usage: "sign update images and write ADU import manifests (build host / CI)",
		Description: `Exit codes: 0 ok, 1 invalid input or failed verification, 2 usage error,
3 I/O or environment error.

EXAMPLE:
   aduimport keygen --type ed25519 -o release.pem
   aduimport sign --key release.pem --version 1.2.0 --slot-class rootfs -o rootfs.aduimg rootfs.ext4
   aduimport verify --pub release.pub.pem rootfs.aduimg`,
		Commands: []*cli.Command{
			e.keygenCommand(),
			e.signCommand(),
			e.verifyCommand(),
			e.inspectCommand(),
			e.indexCommand(),
			e.mcubootCommand(),
			e.manifestCommand(),
			e.checkFitCommand(),
			e.publishCommand(),
		},
	}, stdout, stderr)
}

// Run runs aduimport with args (args[0] is the program name) and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cliapp.Run(ctx, New(stdout, stderr), args, stderr)
}

// Shorthands for the shared conventions.
var (
	args = cliapp.Args
	need = cliapp.Need
)
