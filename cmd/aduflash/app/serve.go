package app

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/recovery/tftpserve"
)

// DefaultTFTPListen is where aduflash serve listens unless told otherwise: loopback, port 6969
// (QEMU's user network answers port 69 of its host address itself).
const DefaultTFTPListen = "127.0.0.1:6969"

func (e *env) serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve the verified files of a folder over TFTP (read only) to U-Boot and other TFTP clients",
		ArgsUsage: "DIR",
		Description: `Every regular file of DIR and its subfolders is read and verified once at startup, and
offered under its name relative to DIR ("rootfs.aduimg", "board1/boot.scr"):

  - an aduimg image is served as its verified payload (decompressed, every chunk checked),
    under the image's own file name: what U-Boot loads is what goes into the slot;
  - an MCUboot image is served as it is, once its hash and signature checked;
  - any other file (a U-Boot script, an environment image) is served as it is.

A signed image needs --pub or --keyring; one that does not verify stops serve before it
listens. The catalog is printed (--json: as JSON): each file's name, format, version, size
(of the bytes served), CRC-32 (as U-Boot's crc32 prints it) and SHA-256. Files that change
later are not served changed: each transfer is verified again and must match the catalog
to its last byte, or it ends with a TFTP error. Files added later are not served.

Read requests (octet mode; blksize, tsize, windowsize up to --window) get the file;
everything else is refused with a TFTP error and logged: writes (access violation), names that are absolute or hold "..",
names not in the catalog, netascii mode. Each request is logged on stderr; each transfer
shows a progress bar on a terminal and a log line when it ends.

--listen is 127.0.0.1:6969 by default (QEMU's user network reaches it as 10.0.2.2:6969;
tell U-Boot "setenv tftpdstp 6969"). Another address (0.0.0.0, the address of the Ethernet
port a board is cabled to) needs --expose-to-network: then anyone who reaches that address
can read the catalog's files (only those: read-only, never outside DIR).

Exit codes: 0 stopped by a signal (or, with --list, the catalog printed); 1 an image that does
not verify; 2 usage error (also a signed image without --pub/--keyring, or a listen address
beyond loopback without --expose-to-network); 3 DIR unreadable or the address in use.

EXAMPLE:
   aduflash serve --pub release.pub.pem ./recovery
   aduflash serve --list --json --keyring keyring.toml ./recovery
   aduflash serve --listen 0.0.0.0:69 --expose-to-network --pub release.pub.pem ./recovery`,
		Flags: slices.Concat([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: DefaultTFTPListen, Usage: "UDP `ADDR` to take requests on"},
			&cli.BoolFlag{Name: "expose-to-network", Usage: "allow a --listen address other than loopback: whoever reaches it can read the served files"},
		}, cliapp.TrustFlags(), []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: tftpserve.DefaultTimeout, Usage: "wait `DURATION` for each block's acknowledgement before sending it again (at most 5 times)"},
			windowFlag(),
			&cli.BoolFlag{Name: "list", Usage: "print the catalog and exit without serving"},
			cliapp.JSONFlag("the catalog"),
		}),
		Action: e.serve,
	}
}

// windowFlag is --window of serve and recover: the TFTP window (RFC 7440) served.
func windowFlag() cli.Flag {
	return &cli.IntFlag{Name: "window", Value: tftpserve.DefaultWindow, Usage: fmt.Sprintf("send up to `N` blocks per acknowledgement to a client that asks for a window (RFC 7440; U-Boot: setenv tftpwindowsize N); 1 to %d, 1: one block at a time", tftpserve.MaxWindow)}
}

// checkWindow refuses a --window the server does not serve.
func checkWindow(c *cli.Context) error {
	if w := c.Int("window"); w < 1 || w > tftpserve.MaxWindow {
		return exitcode.Usagef("--window %d: want 1 to %d", w, tftpserve.MaxWindow)
	}
	return nil
}

// serveResult is the catalog serve prints.
type serveResult struct {
	cliapp.Outcome
	Dir     string              `json:"dir"`
	Listen  string              `json:"listen,omitempty"`
	Files   []tftpserve.File    `json:"files"`
	Skipped []tftpserve.Skipped `json:"skipped,omitempty"`
}

func (e *env) serve(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "DIR"); err != nil {
		return err
	}
	res := &serveResult{Dir: c.Args().First(), Files: []tftpserve.File{}}
	cat, conn, err := e.startServe(c, res)
	if c.Bool("json") {
		err = cliapp.JSONVerdict(e.stdout, res, err, res.Mark)
	} else if err == nil {
		e.printCatalog(res)
	}
	if err != nil {
		return err
	}
	defer cat.Close()
	if conn == nil { // --list
		return nil
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	srv := &tftpserve.Server{Catalog: cat, Timeout: c.Duration("timeout"), Window: c.Int("window"), OnRequest: logRequest(log),
		Progress: e.transferMeter(log, progress.IsTerminal(e.stderr))}
	fmt.Fprintf(e.stderr, "aduflash serve: %d files of %s on %s (TFTP, read only); Ctrl-C stops\n", len(res.Files), res.Dir, res.Listen)
	return srv.Serve(c.Context, conn)
}

// startServe checks the flags, makes the catalog and opens the port (unless --list).
func (e *env) startServe(c *cli.Context, res *serveResult) (*tftpserve.Catalog, net.PacketConn, error) {
	listen := c.String("listen")
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return nil, nil, exitcode.Usagef("--listen %q: want HOST:PORT (%v)", listen, err)
	}
	if err := checkWindow(c); err != nil {
		return nil, nil, err
	}
	if !cliapp.LoopbackListen(listen) && !c.Bool("expose-to-network") {
		return nil, nil, exitcode.Usagef("--listen %s takes requests from beyond this machine: add --expose-to-network to let the network read the served files", listen)
	}
	var kr *image.Keyring
	if pubs, keyring := c.StringSlice("pub"), c.String("keyring"); len(pubs) > 0 || keyring != "" {
		var err error
		if kr, err = image.LoadTrust(keyring, pubs); err != nil {
			return nil, nil, err
		}
	}
	dir, err := filepath.Abs(res.Dir)
	if err != nil {
		return nil, nil, err
	}
	res.Dir = dir
	bars := progress.Output(e.stderr, c.Bool("json"))
	if !progress.IsTerminal(bars) {
		bars = nil
	}
	cat, err := tftpserve.Open(c.Context, dir, tftpserve.Options{Keyring: kr, Progress: func(name string, size int64) tftpserve.Meter {
		return progress.New(bars, size, "verify "+name)
	}})
	if err != nil {
		return nil, nil, err
	}
	res.Files, res.Skipped = cat.Files(), cat.Skipped()
	if c.Bool("list") {
		return cat, nil, nil
	}
	conn, err := net.ListenPacket("udp", listen)
	if err != nil {
		cat.Close()
		return nil, nil, err
	}
	res.Listen = conn.LocalAddr().String()
	return cat, conn, nil
}

// printCatalog prints the served files as a table, and what is not served on stderr.
func (e *env) printCatalog(res *serveResult) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFORMAT\tVERSION\tSIZE\tCRC32\tSHA256")
	for _, f := range res.Files {
		v := f.Version
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", f.Name, f.Format, v, f.Size, f.CRC32, f.SHA256)
	}
	tw.Flush()
	for _, s := range res.Skipped {
		fmt.Fprintf(e.stderr, "aduflash serve: not served: %s: %s\n", s.Name, s.Reason)
	}
}

// logRequest logs every request: what an accepted one is served, why a refused one is not.
func logRequest(log *slog.Logger) func(tftpserve.Request) {
	return func(r tftpserve.Request) {
		op := "read"
		if r.Write {
			op = "write"
		}
		attrs := []any{"client", r.Remote.String(), "op", op, "file", r.Name, "mode", r.Mode, "options", options(r.Options)}
		if r.Err != nil {
			log.Warn("request refused", append(attrs, "error", r.Err.Error())...)
			return
		}
		f := r.File
		log.Info("request", append(attrs, "format", f.Format, "size", f.Size, "crc32", f.CRC32.String())...)
	}
}

// options prints request options as "blksize=1468 tsize=0", sorted.
func options(o map[string]string) string {
	var s []string
	for k, v := range o {
		s = append(s, k+"="+v)
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// transferMeter follows each transfer: a progress bar on a terminal, a log line at its end.
func (e *env) transferMeter(log *slog.Logger, bars bool) func(tftpserve.Transfer) tftpserve.Meter {
	return func(t tftpserve.Transfer) tftpserve.Meter {
		m := &sendMeter{log: log, t: t, start: time.Now()}
		if bars {
			m.bar = progress.New(e.stderr, t.File.Size, t.File.Name+" → "+t.Remote.String())
		}
		return m
	}
}

type sendMeter struct {
	log   *slog.Logger
	t     tftpserve.Transfer
	start time.Time
	bar   *progress.Bar // nil off a terminal
	sent  atomic.Int64
}

func (m *sendMeter) Add(n int64) {
	m.sent.Add(n)
	m.bar.Add(n)
}

func (m *sendMeter) End(err error) {
	m.bar.End(err)
	attrs := []any{"client", m.t.Remote.String(), "file", m.t.File.Name, "bytes", m.sent.Load(), "seconds", roundSeconds(time.Since(m.start))}
	if err != nil {
		m.log.Error("transfer failed", append(attrs, "error", err.Error())...)
		return
	}
	m.log.Info("sent", attrs...)
}

func roundSeconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }
