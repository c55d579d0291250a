// Package cliapp gives every binary of the toolkit the same command-line behaviour on top of
// urfave/cli/v2: flag errors, unknown commands and missing arguments are usage errors (exit
// 2), a command that only groups subcommands rejects unknown names, errors print as one line
// prefixed with the program name, and main gets the exit code from package exitcode.
package cliapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

// DefaultDeviceConfig is the device configuration file (TOML: [slots], [bootloader], [agent])
// that aduagent reads unless --config names another, and that aduflash's examples use.
const DefaultDeviceConfig = "/etc/aduflash/aduagent.toml"

// Version is the toolkit's version, which every binary reports (--version). It is set at
// build time with -ldflags "-X github.com/aduflash/aduflash/cmd/internal/cliapp.Version=…".
var Version = "dev"

// New finishes a program's command tree a: its output goes to stdout and stderr, it reports
// Version, and the conventions are applied (Prepare).
func New(a *cli.App, stdout, stderr io.Writer) *cli.App {
	a.Version = Version
	a.Writer, a.ErrWriter = stdout, stderr
	Prepare(a)
	return a
}

// Prepare applies the conventions to a built command tree. Call it last, after Commands are set.
func Prepare(a *cli.App) {
	a.HideHelpCommand = true
	a.EnableBashCompletion = true
	a.Suggest = true
	// main decides the exit code; urfave must not exit on its own.
	a.ExitErrHandler = func(*cli.Context, error) {}
	a.OnUsageError = usageError
	a.CommandNotFound = func(c *cli.Context, name string) {
		fmt.Fprintf(a.ErrWriter, "%s: unknown command %q (see %s --help)\n", a.Name, name, a.Name)
	}
	if a.Action == nil {
		a.Action = func(c *cli.Context) error {
			if c.NArg() > 0 {
				return exitcode.Usagef("unknown command %q (see %s --help)", c.Args().First(), a.Name)
			}
			cli.ShowAppHelp(c)
			return exitcode.Usagef("no command given")
		}
	}
	prepare(a.Commands)
}

func usageError(c *cli.Context, err error, _ bool) error {
	return exitcode.WithCode(exitcode.Usage, err)
}

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

// Run runs a with args (args[0] is the program name) and returns the exit code. Errors are
// printed to stderr as one line prefixed with the program name, unless marked Silent.
func Run(ctx context.Context, a *cli.App, args []string, stderr io.Writer) int {
	err := a.RunContext(ctx, flagsFirst(a, args))
	if err != nil {
		var s *silentError
		if !errors.As(err, &s) {
			fmt.Fprintln(stderr, errorLine(a.Name, err))
		}
	}
	return exitcode.Of(err)
}

// errorLine prefixes err's message with the program name, unless the message starts with it
// already: errors that name their command ("aduimport sign: missing --version", the
// command's HelpName) would otherwise name the program twice.
func errorLine(program string, err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, program+" ") {
		return msg
	}
	return program + ": " + msg
}

type silentError struct{ error }

func (s *silentError) Unwrap() error { return s.error }

// Silent marks an error whose message the command already printed (e.g. as JSON); Run then
// prints nothing more but still exits with its code.
func Silent(err error) error {
	if err == nil {
		return nil
	}
	return &silentError{err}
}

// Args checks the number of positional arguments (max < 0: no upper bound).
func Args(c *cli.Context, min, max int, what string) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		extra := ""
		if n > 0 {
			extra = ": " + strings.Join(c.Args().Slice(), " ")
		}
		return exitcode.Usagef("%s: expected %s, got %d argument(s)%s", c.Command.HelpName, what, n, extra)
	}
	return nil
}

// Need checks that string flags were given (the toolkit never uses urfave's Required, whose
// error could not be told from others).
func Need(c *cli.Context, names ...string) error {
	for _, n := range names {
		if !c.IsSet(n) || c.String(n) == "" {
			return exitcode.Usagef("%s: missing --%s", c.Command.HelpName, n)
		}
	}
	return nil
}

// WriteJSON prints v as indented JSON, without HTML escaping: the --json output of every
// command.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// Outcome is how a command ended, the first members of its --json result: ok, the error's
// message and the exit code. Embed it in a result and pass its Mark to JSONVerdict.
type Outcome struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exit_code"`
}

// Mark records how the command ended.
func (o *Outcome) Mark(ok bool, exitCode int, msg string) {
	o.OK, o.ExitCode, o.Error = ok, exitCode, msg
}

// JSONVerdict ends a command that prints its result as JSON: mark records the outcome of err
// in res (ok, exit code, message), res is printed, and the error is returned silenced (it is
// in the JSON already), so the exit code still tells the outcome.
func JSONVerdict(w io.Writer, res any, err error, mark func(ok bool, exitCode int, msg string)) error {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	mark(err == nil, exitcode.Of(err), msg)
	if jerr := WriteJSON(w, res); jerr != nil && err == nil {
		return jerr
	}
	return Silent(err)
}

// TrustFlags are --pub and --keyring, which name the keys an image may be signed with
// (image.LoadTrust reads them); pubAliases are other names of --pub.
func TrustFlags(pubAliases ...string) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "pub", Aliases: pubAliases, Usage: "trusted public key `PEM` file (repeatable)", TakesFile: true},
		&cli.StringFlag{Name: "keyring", Usage: "keyring `FILE` (TOML: trusted keys and revoked key ids)", TakesFile: true},
	}
}

// JSONFlag is --json, which prints what (e.g. "the result") as JSON instead of text.
func JSONFlag(what string) cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print " + what + " as JSON"}
}
