package app

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/recovery/console"
)

func (e *env) recoverCommand() *cli.Command {
	return &cli.Command{
		Name:      "recover",
		Usage:     "bring a board back through its U-Boot console: load images over TFTP, check them in U-Boot, write them, reset, watch it boot",
		ArgsUsage: " ",
		Description: `recover drives U-Boot on the board's serial console (--console, --baud). It sends Ctrl-C
until a prompt answers (power the board on, or reset it, while it waits; a board already at
its prompt, or in the middle of a banner, is fine), sets the board's network (ipaddr or
DHCP, serverip, the TFTP server's port as tftpdstp, netretry=no), then runs the --script
file's steps one command at a time: each command is typed, its echo checked before Enter
(a character lost on the line never runs a different command), and its output read up to
its exit status. The first error U-Boot prints (a TFTP error or timeout, a crc32/hash
mismatch, an expected value missing, an unknown command, more bad blocks than the step's
reserve, "ERROR") or a non-zero status stops the run, and nothing after it is typed. TFTP
transfers show a progress bar. Then the board is reset and watched until a line contains
--up (with --no-reset the board is left at its prompt).

The TFTP server is not part of recover: run one the board can reach (aduflash serve, or
any TFTP server) and give its address as the board sees it (--serverip, --tftp-port). A
port other than 69 needs a U-Boot built with CONFIG_TFTP_PORT.

The script file holds U-Boot commands, one a line, grouped by comment directives:
"# step: NAME" starts a step, "# image: FILE [SIZE]" names the file it loads (the progress
bar; U-Boot's "Bytes transferred" must equal SIZE), "# expect: TEXT" after a command is a
value its output must hold (the CRC-32 computed on the workstation: "==> 1c291ca3"),
"# bad-block-reserve: N|none" the NAND bad blocks the step may skip (default 0). --dry-run
prints the whole session in that format (each command is typed followed by
"; echo @@ADU<token>.<n> $?", the marker of its end) and opens nothing.

Every line the board prints goes to --log with a timestamp.

Exit codes: 0 recovered and up (or, with --dry-run, the plan is valid); 1 a check failed in
U-Boot (a damaged transfer, a wrong value), an image or command U-Boot refused, or a bad
script; 2 usage error; 3 the console, network, flash or board failed: no prompt, a TFTP
error or timeout, a write error, no boot.

EXAMPLE:
   aduflash recover --console /dev/ttyUSB0 --ipaddr 192.168.0.2 --serverip 192.168.0.1 --script recover.txt --up "login:"
   aduflash recover --dry-run --ipaddr dhcp --serverip 10.0.2.2 --tftp-port 6969 --script recover.txt`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "console", Usage: "the board's serial console `DEVICE` (e.g. /dev/ttyUSB0)", TakesFile: true},
			&cli.IntFlag{Name: "baud", Value: 115200, Usage: "the console's baud `RATE`"},
			&cli.StringFlag{Name: "script", Usage: "the steps to run: U-Boot commands with step directives (`FILE`)", TakesFile: true},
			&cli.StringFlag{Name: "ipaddr", Usage: "the board's IPv4 `ADDRESS`, or \"dhcp\""},
			&cli.StringFlag{Name: "serverip", Usage: "the TFTP server's IPv4 `ADDRESS` as the board sees it"},
			&cli.IntFlag{Name: "tftp-port", Value: 69, Usage: "the TFTP server's UDP `PORT`"},
			&cli.StringFlag{Name: "up", Value: "login:", Usage: "`TEXT` of a line that proves the board is up after the reset"},
			&cli.BoolFlag{Name: "no-reset", Usage: "leave the board at its prompt after the last step"},
			&cli.StringFlag{Name: "prompt", Value: "=> ", Usage: "U-Boot's `PROMPT` (CONFIG_SYS_PROMPT)"},
			&cli.DurationFlag{Name: "prompt-timeout", Value: time.Minute, Usage: "how long to look for the prompt"},
			&cli.DurationFlag{Name: "command-timeout", Value: 5 * time.Minute, Usage: "the longest a command may print nothing"},
			&cli.DurationFlag{Name: "boot-timeout", Value: 5 * time.Minute, Usage: "how long the board may take to print --up after the reset"},
			&cli.StringFlag{Name: "log", Value: "aduflash-recover.log", Usage: "`FILE` that gets every console line, timestamped (appended)", TakesFile: true},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be typed, open nothing"},
		},
		Action: e.recover,
	}
}

func (e *env) recover(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no argument"); err != nil {
		return err
	}
	if err := cliapp.Need(c, "script", "ipaddr", "serverip"); err != nil {
		return err
	}
	if !c.Bool("dry-run") {
		if err := cliapp.Need(c, "console"); err != nil {
			return err
		}
	}
	plan, err := recoverPlan(c)
	if err != nil {
		return err
	}
	steps, err := plan.Script()
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		return e.printPlan(c, plan, steps)
	}

	port, err := console.Open(c.String("console"), c.Int("baud"))
	if err != nil {
		return err
	}
	defer port.Close()
	logf, err := os.OpenFile(c.String("log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	defer logf.Close()
	con := console.New(port, c.String("console"), console.Options{
		Prompt:         c.String("prompt"),
		PromptTimeout:  c.Duration("prompt-timeout"),
		CommandTimeout: c.Duration("command-timeout"),
		Log:            logf,
	})
	defer con.Close()

	fmt.Fprintf(e.stderr, "waiting for U-Boot's prompt on %s (power the board on or reset it)...\n", c.String("console"))
	start := time.Now()
	if err := console.Recover(c.Context, con, plan, &recoverView{out: e.stdout, bars: e.stderr}); err != nil {
		return fmt.Errorf("%w (console log: %s)", err, c.String("log"))
	}
	if plan.Up == "" {
		fmt.Fprintf(e.stdout, "done in %.1fs; the board is at its prompt (log: %s)\n", time.Since(start).Seconds(), c.String("log"))
		return nil
	}
	fmt.Fprintf(e.stdout, "recovered in %.1fs: the board printed %q (log: %s)\n", time.Since(start).Seconds(), plan.Up, c.String("log"))
	return nil
}

// recoverPlan reads the flags and the script file into a plan.
func recoverPlan(c *cli.Context) (console.Plan, error) {
	plan := console.Plan{
		Network:     console.Network{IPAddr: c.String("ipaddr"), ServerIP: c.String("serverip"), Port: c.Int("tftp-port")},
		Up:          c.String("up"),
		BootTimeout: c.Duration("boot-timeout"),
	}
	if c.Bool("no-reset") {
		plan.Up = ""
	} else if plan.Up == "" {
		return plan, exitcode.Usagef("%s: --up is empty: give the text that proves the board is up, or --no-reset", c.Command.HelpName)
	}
	f, err := os.Open(c.String("script"))
	if err != nil {
		return plan, err
	}
	defer f.Close()
	if plan.Steps, err = console.ParseScript(f); err != nil {
		return plan, fmt.Errorf("%s: %w", c.String("script"), err)
	}
	return plan, nil
}

func (e *env) printPlan(c *cli.Context, plan console.Plan, steps []console.Step) error {
	fmt.Fprintf(e.stdout, "# aduflash recover --dry-run: typed at the %q prompt, each command followed by \"; echo @@ADU<token>.<n> $?\"\n", c.String("prompt"))
	if err := console.WriteScript(e.stdout, steps); err != nil {
		return err
	}
	if plan.Up == "" {
		fmt.Fprintln(e.stdout, "# then the board is left at its prompt")
		return nil
	}
	fmt.Fprintf(e.stdout, "# step: boot\nreset\n# then up to %v for a line with %q\n", plan.BootTimeout, plan.Up)
	return nil
}

// recoverView shows a recovery: a line per step, a progress bar per transfer.
type recoverView struct {
	out, bars io.Writer
}

func (v *recoverView) Transfer(image string, size int64) console.Meter {
	return progress.New(v.bars, size, image)
}

func (v *recoverView) StepDone(s console.Step, took time.Duration, err error) {
	if err == nil {
		fmt.Fprintf(v.out, "step %s: ok (%.1fs)\n", s.Name, took.Seconds())
	}
}
