// Package app is aduimport's command line: signing images, MCUboot images and ADU import
// manifests on a build host or in CI. main only calls Run; everything else lives here so that
// tests drive the same code the binary runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

// Version is set at build time with -ldflags "-X github.com/aduflash/aduflash/cmd/aduimport/app.Version=…".
var Version = "dev"

// env is what every command may use besides its flags and arguments.
type env struct {
	stdout, stderr io.Writer
}

// New builds the aduimport command tree writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	e := &env{stdout: stdout, stderr: stderr}
	a := &cli.App{
		Name:      "aduimport",
		Usage:     "sign update images and write ADU import manifests (build host / CI)",
		Version:   Version,
		Writer:    stdout,
		ErrWriter: stderr,
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
			e.mcubootCommand(),
			e.manifestCommand(),
		},
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Suggest:              true,
		// main decides the exit code; urfave must not exit on its own.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	a.CommandNotFound = func(c *cli.Context, name string) {
		fmt.Fprintf(stderr, "aduimport: unknown command %q (see aduimport --help)\n", name)
	}
	a.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			return exitcode.Usagef("unknown command %q (see aduimport --help)", c.Args().First())
		}
		cli.ShowAppHelp(c)
		return exitcode.Usagef("no command given")
	}
	prepare(a.Commands)
	a.OnUsageError = usageError
	return a
}

// Run runs aduimport with args (args[0] is the program name) and returns the exit code.
// Errors are printed to stderr, one line prefixed with the program name.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := New(stdout, stderr).RunContext(ctx, args)
	code := exitcode.Of(err)
	if err != nil {
		var silent *silentError
		if !errors.As(err, &silent) {
			fmt.Fprintf(stderr, "aduimport: %v\n", err)
		}
	}
	return code
}

// silentError marks an error whose message the command already printed (e.g. as JSON).
type silentError struct{ error }

func (s *silentError) Unwrap() error { return s.error }

func usageError(c *cli.Context, err error, _ bool) error {
	return exitcode.WithCode(exitcode.Usage, err)
}

// prepare applies the toolkit's conventions to a command tree: flag errors are usage errors
// (exit 2), and a command that only groups subcommands rejects unknown names with exit 2.
func prepare(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = usageError
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = func(ctx *cli.Context) error {
				if ctx.NArg() > 0 {
					return exitcode.Usagef("unknown command %q for %q (see %s --help)", ctx.Args().First(), ctx.Command.FullName(), ctx.Command.HelpName)
				}
				cli.ShowSubcommandHelp(ctx)
				return exitcode.Usagef("%s needs a subcommand", ctx.Command.HelpName)
			}
		}
		prepare(c.Subcommands)
	}
}

// args checks the number of positional arguments.
func args(c *cli.Context, min, max int, what string) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		return exitcode.Usagef("%s: expected %s, got %d argument(s)%s", c.Command.HelpName, what, n, extra(c))
	}
	return nil
}

func extra(c *cli.Context) string {
	if c.NArg() == 0 {
		return ""
	}
	return ": " + strings.Join(c.Args().Slice(), " ")
}

// need checks that a string flag was given.
func need(c *cli.Context, names ...string) error {
	for _, n := range names {
		if !c.IsSet(n) || c.String(n) == "" {
			return exitcode.Usagef("%s: missing --%s", c.Command.HelpName, n)
		}
	}
	return nil
}
