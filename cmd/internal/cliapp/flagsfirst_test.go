package cliapp

import (
	"context"
	"io"
	"slices"
	"testing"

	"github.com/urfave/cli/v2"
)

// Flags after a command's arguments are read as flags, as the help texts write them.
func TestFlagsFirst(t *testing.T) {
	a := &cli.App{Name: "tool", Flags: []cli.Flag{&cli.StringFlag{Name: "config"}},
		Commands: []*cli.Command{{Name: "device", Subcommands: []*cli.Command{{Name: "add",
			Flags: []cli.Flag{&cli.StringFlag{Name: "data", Aliases: []string{"d"}}, &cli.BoolFlag{Name: "json"}}}}}}}
	for _, tc := range []struct{ in, want []string }{
		{[]string{"tool", "device", "add", "dev1", "--data", "D"}, []string{"tool", "device", "add", "--data", "D", "dev1"}},
		{[]string{"tool", "device", "add", "dev1", "--json", "dev2"}, []string{"tool", "device", "add", "--json", "dev1", "dev2"}},
		{[]string{"tool", "device", "add", "dev1", "-d=D", "--json"}, []string{"tool", "device", "add", "-d=D", "--json", "dev1"}},
		{[]string{"tool", "--config", "C", "device", "add", "dev1", "-d", "D"}, []string{"tool", "--config", "C", "device", "add", "-d", "D", "dev1"}},
		{[]string{"tool", "device", "add", "dev1", "--", "--data", "D"}, []string{"tool", "device", "add", "dev1", "--", "--data", "D"}},
		{[]string{"tool", "device", "add", "-", "--bogus"}, []string{"tool", "device", "add", "--bogus", "-"}},
		{[]string{"tool", "device", "add", "--data", "D", "dev1"}, []string{"tool", "device", "add", "--data", "D", "dev1"}},
		{[]string{"tool"}, []string{"tool"}},
	} {
		if got := flagsFirst(a, slices.Clone(tc.in)); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Run reads them so.
func TestRunReadsFlagsAfterArguments(t *testing.T) {
	var data string
	var args []string
	a := &cli.App{Name: "tool", Commands: []*cli.Command{{Name: "add", Flags: []cli.Flag{&cli.StringFlag{Name: "data"}},
		Action: func(c *cli.Context) error { data, args = c.String("data"), c.Args().Slice(); return nil }}}}
	Prepare(a)
	if code := Run(context.Background(), a, []string{"tool", "add", "dev1", "--data", "D"}, io.Discard); code != 0 || data != "D" || !slices.Equal(args, []string{"dev1"}) {
		t.Errorf("exit %d, --data %q, args %q", code, data, args)
	}
}
