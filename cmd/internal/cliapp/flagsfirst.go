package cliapp

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst moves the flags given after a command's positional arguments in front of them,
// so that "aduhub device add dev1 --data D" means "aduhub device add --data D dev1", as the
// help texts write it (urfave/cli v2 stops reading flags at the first argument, and would
// take "--data" and "D" for two more arguments). A flag of the command moves with its value;
// an unknown one moves alone, so that urfave names it. "--" ends the flags, as usual: what
// follows it stays where it is. "-" alone is an argument (standard input).
func flagsFirst(a *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	flags, cmds := a.Flags, a.Commands
	i := 1
	// The command path: names of (sub)commands, each level's flags before the next name.
	for i < len(args) && args[i] != "--" {
		if isFlagToken(args[i]) {
			n := flagTokens(flags, args[i:])
			out = append(out, args[i:i+n]...)
			i += n
			continue
		}
		c := findCommand(cmds, args[i])
		if c == nil {
			break
		}
		out = append(out, args[i])
		i++
		flags, cmds = c.Flags, c.Subcommands
	}
	// The last command's arguments, with its flags moved in front of them.
	var moved, rest []string
	for i < len(args) {
		if args[i] == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if isFlagToken(args[i]) {
			n := flagTokens(flags, args[i:])
			moved = append(moved, args[i:i+n]...)
			i += n
			continue
		}
		rest = append(rest, args[i])
		i++
	}
	return append(append(out, moved...), rest...)
}

func isFlagToken(s string) bool { return len(s) > 1 && s[0] == '-' && s != "--" }

// flagTokens is how many tokens the flag at args[0] takes: 2 for a known flag that takes a
// value given as the next token, else 1 (a bool flag, -name=value, an unknown flag).
func flagTokens(flags []cli.Flag, args []string) int {
	name := strings.TrimLeft(args[0], "-")
	if strings.Contains(name, "=") || len(args) < 2 {
		return 1
	}
	if name == "h" || name == "help" {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, ok := f.(*cli.BoolFlag); ok {
				return 1
			}
			return 2
		}
	}
	return 1
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
