package cliapp

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

func testApp(out, errOut *bytes.Buffer) *cli.App {
	return New(&cli.App{
		Name: "tool",
		Commands: []*cli.Command{
			{Name: "do", Flags: []cli.Flag{&cli.StringFlag{Name: "x"}}, Action: func(c *cli.Context) error {
				if err := Args(c, 1, 1, "FILE"); err != nil {
					return err
				}
				if err := Need(c, "x"); err != nil {
					return err
				}
				switch c.Args().First() {
				case "bad":
					return exitcode.InvalidInput(errors.New("file is bad"))
				case "quiet":
					return Silent(exitcode.InvalidInput(errors.New("already said")))
				case "io":
					return errors.New("disk on fire")
				}
				return nil
			}},
			{Name: "group", Subcommands: []*cli.Command{{Name: "leaf", Action: func(*cli.Context) error { return nil }}}},
		},
	}, out, errOut)
}

func TestConventions(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"do", "--x", "1", "ok"}, exitcode.OK, ""},
		{[]string{"do", "--x", "1", "bad"}, exitcode.Invalid, "tool: file is bad"},
		{[]string{"do", "--x", "1", "quiet"}, exitcode.Invalid, ""},
		{[]string{"do", "--x", "1", "io"}, exitcode.IO, "tool: disk on fire"},
		{[]string{"do", "ok"}, exitcode.Usage, "missing --x"},
		{[]string{"do", "--x", "1"}, exitcode.Usage, "expected FILE"},
		{[]string{"do", "--x", "1", "a", "b"}, exitcode.Usage, "got 2 argument(s): a b"},
		{[]string{"do", "--nope"}, exitcode.Usage, "flag provided but not defined"},
		{[]string{}, exitcode.Usage, "no command given"},
		{[]string{"nope"}, exitcode.Usage, "unknown command"},
		{[]string{"group"}, exitcode.Usage, "needs a subcommand"},
		{[]string{"group", "nope"}, exitcode.Usage, `unknown command "nope"`},
		{[]string{"group", "leaf"}, exitcode.OK, ""},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), testApp(&out, &errOut), append([]string{"tool"}, c.args...), &errOut)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", c.args, code, c.code, errOut.String())
		}
		if c.msg == "" && c.code == exitcode.Invalid && errOut.Len() != 0 {
			t.Errorf("%q: a silent error printed %q", c.args, errOut.String())
		}
		if c.msg != "" && !strings.Contains(errOut.String(), c.msg) {
			t.Errorf("%q: stderr %q does not contain %q", c.args, errOut.String(), c.msg)
		}
	}
}

// An error names the program once, whether or not it names its command.
func TestErrorNamesTheProgramOnce(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"do", "ok"}, "tool do: missing --x\n"},
		{[]string{"do", "--x", "1"}, "tool do: expected FILE, got 0 argument(s)\n"},
		{[]string{"group"}, "tool group needs a subcommand\n"},
		{[]string{"do", "--x", "1", "bad"}, "tool: file is bad\n"},
	} {
		var out, errOut bytes.Buffer
		Run(context.Background(), testApp(&out, &errOut), append([]string{"tool"}, c.args...), &errOut)
		if got := errOut.String(); got != c.want {
			t.Errorf("%q: stderr %q, want %q", c.args, errOut.String(), c.want)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var out bytes.Buffer
	if err := WriteJSON(&out, map[string]string{"a": "<b>"}); err != nil || out.String() != "{\n  \"a\": \"<b>\"\n}\n" {
		t.Errorf("WriteJSON: %q %v", out.String(), err)
	}
}

// TestJSONVerdict: the result embedding Outcome opens with how the command ended (ok, the
// error, the exit code), and the error comes back silenced with its exit code.
func TestJSONVerdict(t *testing.T) {
	type res struct {
		Outcome
		Name string `json:"name"`
	}
	for _, err := range []error{nil, exitcode.InvalidInput(errors.New("bad image"))} {
		var out bytes.Buffer
		r := &res{Name: "x"}
		got := JSONVerdict(&out, r, err, r.Mark)
		if exitcode.Of(got) != exitcode.Of(err) {
			t.Errorf("err %v: returned exit %d", err, exitcode.Of(got))
		}
		want := "{\n  \"ok\": true,\n  \"exit_code\": 0,\n  \"name\": \"x\"\n}\n"
		if err != nil {
			want = "{\n  \"ok\": false,\n  \"error\": \"bad image\",\n  \"exit_code\": 1,\n  \"name\": \"x\"\n}\n"
		}
		if out.String() != want {
			t.Errorf("err %v: printed %s, want %s", err, out.String(), want)
		}
		var errOut bytes.Buffer
		a := &cli.App{Name: "x", ErrWriter: &errOut, Action: func(*cli.Context) error { return got }}
		Prepare(a)
		Run(context.Background(), a, []string{"x"}, &errOut)
		if errOut.Len() != 0 {
			t.Errorf("err %v: the silenced error was printed again: %q", err, errOut.String())
		}
	}
}
