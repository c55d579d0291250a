package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/recovery/console"
	"github.com/aduflash/aduflash/recovery/tftpserve"
)

func (e *env) recoverCommand() *cli.Command {
	return &cli.Command{
		Name:      "recover",
		Usage:     "bring a board back through its U-Boot console: serve the images over TFTP, load and check them in U-Boot, write them, reset, watch it boot",
		ArgsUsage: "[CLASS=]IMAGE...",
		Description: `recover verifies the IMAGEs, serves them over TFTP itself (as aduflash serve does, on
--listen) and drives U-Boot on the board's serial console (--console, --baud) through the
steps aduflash script generates from the device config: for each IMAGE, load it over TFTP,
check it in U-Boot against the SHA-256 (or CRC-32) of what the server serves, write it into
the bank's slot of its class and read the slot back; then U-Boot's default environment with
the bank primary, saved to both copies. The IMAGEs, --config, --bank, --gpt, --pub,
--keyring, --raw, --check and --keep-env are aduflash script's.

It sends Ctrl-C until a prompt answers (power the board on, or reset it, while it waits; a
board already at its prompt, or in the middle of a banner, is fine), sets the board's
network (--ipaddr or DHCP, serverip, the server's port as tftpdstp, tftpwindowsize as
--window unless 1: U-Boot then loads in windows of that many blocks), then types one command
at a time: its echo is checked before Enter (a character lost on the line never runs a
different command) and its output read up to its exit status. The first error U-Boot prints
(a TFTP error or timeout, a failed check, an unknown command, "ERROR") or a non-zero status
stops the run, and nothing after it is typed. TFTP transfers show a progress bar. Then the
board is reset and watched until a line contains --up (with --no-reset the board is left at
its prompt).

--serverip is this machine's address as the board sees it (QEMU's user network: 10.0.2.2;
default: the --listen address, when it is one). --listen is 127.0.0.1:6969 by default;
another address (the one of the Ethernet port the board is cabled to, or 0.0.0.0) needs
--expose-to-network: whoever reaches it can read the IMAGEs while recover runs. A port other
than 69 needs a U-Boot built with CONFIG_TFTP_PORT.

Every line the board prints goes to --log with a timestamp, with the server's requests and
transfers. --dry-run verifies the IMAGEs and prints the session (each command is typed
followed by "; echo @@ADU<token>.<n> $?", the marker of its end); it opens no console and no
port. --json prints the result as JSON.

Exit codes: 0 recovered and up (or, with --dry-run, the plan is valid); 1 an image that does
not verify, a check failed in U-Boot (a damaged transfer: the error names the image), an
image or command U-Boot refused, a bad config; 2 usage error; 3 the console, network, flash
or board failed: no prompt, a TFTP error or timeout, a write error, no boot.

EXAMPLE:
   aduflash recover --config board.toml --pub release.pub.pem --gpt sdcard.img --console /dev/ttyUSB0 \
       --ipaddr 192.168.50.2 --listen 192.168.50.1:69 --expose-to-network --up "login:" rootfs-1.2.0.aduimg
   aduflash recover --config board.toml --pub release.pub.pem --dry-run --ipaddr dhcp --serverip 10.0.2.2 rootfs-1.2.0.aduimg`,
		Flags: append(recoveryFlags(),
			&cli.StringFlag{Name: "console", Usage: "the board's serial console `DEVICE` (e.g. /dev/ttyUSB0)", TakesFile: true},
			&cli.IntFlag{Name: "baud", Value: 115200, Usage: "the console's baud `RATE`"},
			&cli.StringFlag{Name: "ipaddr", Usage: "the board's IPv4 `ADDRESS`, or \"dhcp\""},
			&cli.StringFlag{Name: "serverip", Usage: "this machine's IPv4 `ADDRESS` as the board sees it (default: the --listen address)"},
			&cli.StringFlag{Name: "listen", Value: DefaultTFTPListen, Usage: "UDP `ADDR` the TFTP server takes requests on"},
			&cli.BoolFlag{Name: "expose-to-network", Usage: "allow a --listen address other than loopback: whoever reaches it can read the IMAGEs"},
			windowFlag(),
			&cli.StringFlag{Name: "up", Value: "login:", Usage: "`TEXT` of a line that proves the board is up after the reset"},
			&cli.BoolFlag{Name: "no-reset", Usage: "leave the board at its prompt after the last step"},
			&cli.StringFlag{Name: "prompt", Value: "=> ", Usage: "U-Boot's `PROMPT` (CONFIG_SYS_PROMPT)"},
			&cli.DurationFlag{Name: "prompt-timeout", Value: time.Minute, Usage: "how long to look for the prompt"},
			&cli.DurationFlag{Name: "command-timeout", Value: 5 * time.Minute, Usage: "the longest a command may print nothing"},
			&cli.DurationFlag{Name: "boot-timeout", Value: 5 * time.Minute, Usage: "how long the board may take to print --up after the reset"},
			&cli.StringFlag{Name: "log", Value: "aduflash-recover.log", Usage: "`FILE` that gets every console line, timestamped (appended)", TakesFile: true},
			&cli.BoolFlag{Name: "dry-run", Usage: "verify the images and print what would be typed; open no console and no port"},
			cliapp.JSONFlag("the result"),
		),
		Action: e.recover,
	}
}

// recoverResult is what recover prints with --json.
type recoverResult struct {
	cliapp.Outcome
	Bank    string           `json:"bank,omitempty"`
	Images  []tftpserve.File `json:"images"`
	Steps   []stepResult     `json:"steps"`
	Up      bool             `json:"up"` // the board printed --up after the reset
	Seconds float64          `json:"seconds"`
}

type stepResult struct {
	Name    string  `json:"name"`
	OK      bool    `json:"ok"`
	Seconds float64 `json:"seconds"`
}

func (e *env) recover(c *cli.Context) error {
	res := &recoverResult{Images: []tftpserve.File{}, Steps: []stepResult{}}
	err := e.runRecovery(c, res)
	if c.Bool("json") {
		return cliapp.JSONVerdict(e.stdout, res, err, res.Mark)
	}
	return err
}

// runRecovery checks the flags, verifies the images and generates the steps, then (unless
// --dry-run) serves the images, runs the steps on the console and watches the board boot.
func (e *env) runRecovery(c *cli.Context, res *recoverResult) error {
	if err := cliapp.Args(c, 1, -1, "[CLASS=]IMAGE..."); err != nil {
		return err
	}
	need := []string{"ipaddr"}
	if !c.Bool("dry-run") {
		need = append(need, "console")
	}
	if err := cliapp.Need(c, need...); err != nil {
		return err
	}
	plan, err := recoverPlan(c)
	if err != nil {
		return err
	}
	r, err := e.newRecovery(c)
	if err != nil {
		return err
	}
	defer r.Close()
	res.Bank, res.Images = r.script.Bank, r.catalog.Files()
	plan.Steps = r.script.ConsoleSteps()
	if c.Bool("dry-run") {
		return e.printPlan(c, plan)
	}
	return e.recoverBoard(c, r.catalog, plan, res)
}

// recoverPlan reads the network and the boot from the flags.
func recoverPlan(c *cli.Context) (console.Plan, error) {
	listen := c.String("listen")
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return console.Plan{}, exitcode.Usagef("--listen %q: want HOST:PORT (%v)", listen, err)
	}
	if !cliapp.LoopbackListen(listen) && !c.Bool("expose-to-network") {
		return console.Plan{}, exitcode.Usagef("--listen %s takes requests from beyond this machine: add --expose-to-network to let the network read the images", listen)
	}
	if err := checkWindow(c); err != nil {
		return console.Plan{}, err
	}
	plan := console.Plan{
		Network:     console.Network{IPAddr: c.String("ipaddr"), ServerIP: c.String("serverip"), Window: c.Int("window")},
		Up:          c.String("up"),
		BootTimeout: c.Duration("boot-timeout"),
	}
	if plan.Network.Port, err = strconv.Atoi(port); err != nil {
		return plan, exitcode.Usagef("--listen %q: the port is not a number", listen)
	}
	if plan.Network.ServerIP == "" {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() || a.IsUnspecified() || a.IsLoopback() {
			return plan, exitcode.Usagef("%s: give --serverip: this machine's address as the board sees it (--listen %s is none)", c.Command.HelpName, listen)
		}
		plan.Network.ServerIP = host
	}
	if c.Bool("no-reset") {
		plan.Up = ""
	} else if plan.Up == "" {
		return plan, exitcode.Usagef("%s: --up is empty: give the text that proves the board is up, or --no-reset", c.Command.HelpName)
	}
	if _, err := plan.Script(); err != nil {
		return plan, err
	}
	return plan, nil
}

// recoverBoard serves the catalog on --listen while it runs plan on the console.
func (e *env) recoverBoard(c *cli.Context, cat *tftpserve.Catalog, plan console.Plan, res *recoverResult) error {
	conn, err := net.ListenPacket("udp4", c.String("listen"))
	if err != nil {
		return err
	}
	plan.Network.Port = conn.LocalAddr().(*net.UDPAddr).Port // --listen's port 0: the one given
	port, err := console.Open(c.String("console"), c.Int("baud"))
	if err != nil {
		conn.Close()
		return err
	}
	defer port.Close()
	logf, err := os.OpenFile(c.String("log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		conn.Close()
		return fmt.Errorf("log: %w", err)
	}
	defer logf.Close()
	logw := syncbuf.NewWriter(logf)
	con := console.New(port, c.String("console"), console.Options{
		Prompt:         c.String("prompt"),
		PromptTimeout:  c.Duration("prompt-timeout"),
		CommandTimeout: c.Duration("command-timeout"),
		Log:            logw,
	})
	defer con.Close()

	stop := e.serveWhile(c.Context, &tftpserve.Server{Catalog: cat, Window: plan.Network.Window}, conn, logw)
	defer stop()
	if !c.Bool("json") {
		var names []string
		for _, f := range res.Images {
			names = append(names, f.Name)
		}
		fmt.Fprintf(e.stderr, "serving %s on %s; waiting for U-Boot's prompt on %s (power the board on or reset it)...\n",
			strings.Join(names, ", "), conn.LocalAddr(), c.String("console"))
	}
	start := time.Now()
	view := &recoverView{out: e.stdout, bars: progress.Output(e.stderr, c.Bool("json")), res: res, quiet: c.Bool("json")}
	err = console.Recover(c.Context, con, plan, view)
	res.Seconds = roundSeconds(time.Since(start))
	if err != nil {
		return fmt.Errorf("%w (console log: %s)", err, c.String("log"))
	}
	res.Up = plan.Up != ""
	if c.Bool("json") {
		return nil
	}
	if plan.Up == "" {
		fmt.Fprintf(e.stdout, "done in %.1fs; the board is at its prompt (log: %s)\n", res.Seconds, c.String("log"))
		return nil
	}
	fmt.Fprintf(e.stdout, "recovered in %.1fs: the board printed %q (log: %s)\n", res.Seconds, plan.Up, c.String("log"))
	return nil
}

// serveWhile serves with srv (its Catalog and Window set) on conn, its requests and transfers
// logged to log, until the returned stop is called.
func (e *env) serveWhile(ctx context.Context, srv *tftpserve.Server, conn net.PacketConn, log io.Writer) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	l := slog.New(slog.NewTextHandler(log, nil)).With("tftp", conn.LocalAddr().String())
	srv.OnRequest, srv.Progress, srv.Tamper = logRequest(l), e.transferMeter(l, false), e.tamper
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, conn); err != nil {
			l.Error("server stopped", "error", err.Error())
		}
	}()
	return func() { cancel(); <-done }
}

// printPlan prints the session a recovery would type, step by step.
func (e *env) printPlan(c *cli.Context, plan console.Plan) error {
	steps, err := plan.Script()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return nil
	}
	w := e.stdout
	fmt.Fprintf(w, "# aduflash recover --dry-run: typed at the %q prompt, each command followed by \"; echo @@ADU<token>.<n> $?\"\n", c.String("prompt"))
	for _, s := range steps {
		fmt.Fprintf(w, "# step: %s", s.Name)
		if s.Image != "" {
			fmt.Fprintf(w, " (image %s, %d bytes)", s.Image, s.Size)
		}
		fmt.Fprintln(w)
		for _, cmd := range s.Commands {
			fmt.Fprintln(w, cmd.Line)
			for _, want := range cmd.Expect {
				fmt.Fprintf(w, "# expect: %s\n", want)
			}
		}
	}
	if plan.Up == "" {
		fmt.Fprintln(w, "# then the board is left at its prompt")
		return nil
	}
	fmt.Fprintf(w, "# step: boot\nreset\n# then up to %v for a line with %q\n", plan.BootTimeout, plan.Up)
	return nil
}

// recoverView shows a recovery: a line per step, a progress bar per transfer.
type recoverView struct {
	out, bars io.Writer
	res       *recoverResult
	quiet     bool // --json: no step lines
}

func (v *recoverView) Transfer(image string, size int64) console.Meter {
	return progress.New(v.bars, size, image)
}

func (v *recoverView) StepDone(s console.Step, took time.Duration, err error) {
	v.res.Steps = append(v.res.Steps, stepResult{Name: s.Name, OK: err == nil, Seconds: roundSeconds(took)})
	if err == nil && !v.quiet {
		fmt.Fprintf(v.out, "step %s: ok (%.1fs)\n", s.Name, took.Seconds())
	}
}
