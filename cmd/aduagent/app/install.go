package app

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/lines"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/internal/bytesize"
)

func (e *env) installCommand() *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "install an image into the spare bank by hand, without the service, and reboot into it",
		ArgsUsage: "FILE|URL",
		Description: `Writes one image into the slot of its class in the spare bank (the bank after the running
one), the way a deployment from the service does: the image's signature and chunk hashes
are verified while it streams into the slot (aduimg and MCUboot images, against the
[agent] section's keyring and pub keys), its slot class, compatibility and version are
checked before the first byte is written, the slot is read back, the bank is marked
pending in the bootloader and the device reboots (agent.reboot_command). Before the bank is
marked pending, its slots of the other classes are filled from the running bank's (copied,
resumable and read back; skipped where they hold those bytes already), unless the config's
[slots.class.NAME] says spare = "keep" or "shared". After the reboot
aduagent run health-checks and confirms the bank, or it is rolled back; aduagent mark-good
confirms it by hand.

FILE is a local file; a URL is http://, https:// or file://. Its size comes from the file,
from a HEAD request (http) or from --size. --sha256 is checked over the whole file; it is
optional for signed images and required for raw images (which also need
agent.allow_raw). An interrupted install (power cut, Ctrl-C) resumes where it stopped when
the same command is run again.

Without --no-reboot the device reboots once the bank is pending; with it, nothing happens
until the next reboot, which boots the new bank on trial. The output says how many boots the
bootloader gives it before it falls back (its state after the bank was marked pending).

--dry-run does all of it but the writes: the file is downloaded or read and checked as an
install checks it (signature, every chunk or the MCUboot hash, slot class and fit,
compatibility, version and security counter, a bank already pending), the slots it would
copy are read and compared, and nothing is written: no slot byte, no journal entry, no
bootloader change, no reboot. Its verdict and exit code are the install's.

Exit codes: 0 installed (the bank is pending; rebooting, or not with --no-reboot; with
--dry-run: it would be); 1 the
image was refused (bad signature or hash, unknown key, another slot class, incompatible,
a downgrade, raw without allow_raw or --sha256, too large) or a deployment is already
pending, or invalid config; 2 usage error; 3 I/O or environment error (file or URL that
cannot be read, slot or bootloader storage, journal, interrupted).

EXAMPLE:
   aduagent install rootfs-1.2.0.aduimg
   aduagent install --class firmware --no-reboot app-1.4.signed.bin
   aduagent install --json https://updates.example.com/rootfs-1.2.0.aduimg
   aduagent install --dry-run https://updates.example.com/rootfs-1.2.0.aduimg
   aduagent install --class rootfs --sha256 9f86d081884c7d65... --size 512MiB http://10.0.0.1/rootfs.img`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "class", Usage: "the slot `CLASS` to write (default: the device's only class)"},
			&cli.StringFlag{Name: "sha256", Usage: "the file's SHA-256 (`HEX`), checked over the whole file"},
			&cli.StringFlag{Name: "size", Usage: "the file's size in bytes (`N`, also \"64MiB\"), for URLs that do not tell it"},
			&cli.StringFlag{Name: "index", Usage: "the image's adaptive index (`FILE` or URL, aduimport index): fetch only the chunks the running bank lacks"},
			&cli.StringFlag{Name: "chunks", Usage: "the image's chunk store (`URL` or FILE) that --index describes"},
			&cli.BoolFlag{Name: "no-reboot", Usage: "leave the bank pending without rebooting"},
			&cli.BoolFlag{Name: "dry-run", Usage: "download and check the file as the install would, and write nothing"},
			cliapp.JSONFlag("the result"),
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log the agent's steps to stderr"},
		},
		Action: e.install,
	}
}

// installResult is what install prints.
type installResult struct {
	OK       bool   `json:"ok"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
	Source   string `json:"source"`
	Size     int64  `json:"size"`
	Class    string `json:"class,omitempty"`
	Slot     string `json:"slot,omitempty"`
	Bank     string `json:"bank,omitempty"`
	From     string `json:"from,omitempty"` // the running bank
	Format   string `json:"format,omitempty"`
	Version  string `json:"version,omitempty"`
	KeyID    string `json:"key_id,omitempty"`
	// Bytes is the payload written into the slot.
	Bytes     int64 `json:"bytes"`
	Pending   bool  `json:"pending"`
	Rebooting bool  `json:"rebooting"`
	// Bootloader is the bootloader's state once the bank is pending (nil if unreadable).
	Bootloader *bootloader.State `json:"bootloader,omitempty"`
	// DryRun: nothing was written; OK says the install would have made the bank pending.
	DryRun bool `json:"dry_run,omitempty"`
	// Adaptive is what an adaptive install (--index) fetched, reused and planned.
	Adaptive *install.AdaptiveRecord `json:"adaptive,omitempty"`
	// Copies are the bank's slots of the other classes, filled from the running bank.
	Copies []copyResult `json:"copies,omitempty"`
}

// copyResult is a slot filled from the running bank (agent.CopyState).
type copyResult struct {
	Class string `json:"class"`
	From  string `json:"from"`
	Slot  string `json:"slot"`
	Bytes int64  `json:"bytes"`
	// Identical: the slot held those bytes already; nothing was (or would be) written.
	Identical bool `json:"identical,omitempty"`
}

// copiesOf tells what dep's copies did (or, in a dry run, would do).
func copiesOf(dep *agent.Deployment) []copyResult {
	var out []copyResult
	for _, c := range dep.Copies {
		st := c.Progress.Stats
		out = append(out, copyResult{Class: c.Class, From: c.From, Slot: c.Slot, Bytes: c.Size,
			Identical: c.Size > 0 && st.UnitsWritten == 0 && st.BytesSkipped == c.Size})
	}
	return out
}

func (e *env) install(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "FILE or URL"); err != nil {
		return err
	}
	var sum []byte
	if s := c.String("sha256"); s != "" {
		b, err := hex.DecodeString(strings.TrimSpace(s))
		if err != nil || len(b) != 32 {
			return exitcode.Usagef("--sha256 %q: want 64 hex digits", s)
		}
		sum = b
	}
	size := int64(-1)
	if s := c.String("size"); s != "" {
		n, err := bytesize.Parse(s)
		if err != nil || n < 0 {
			return exitcode.Usagef("--size %q: want a byte count such as 1048576 or \"64MiB\"", s)
		}
		size = n
	}
	cfg, err := agent.LoadConfig(globalFlag(c, "config"))
	if err != nil {
		return err
	}
	level := cfg.Level()
	if !c.Bool("verbose") {
		level = max(level, slog.LevelWarn)
	}
	log := newLogger(e.stderr, level, os.Getenv("JOURNAL_STREAM") != "")

	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
	defer stop()
	src, err := installSource(ctx, cfg.HTTPClient(), c.Args().First(), size)
	if err != nil {
		return err
	}
	src.SHA256 = sum
	af, err := adaptiveFiles(ctx, cfg.HTTPClient(), c.String("index"), c.String("chunks"))
	if err != nil {
		return err
	}

	o, d, err := agentOptions(c, cfg, log)
	if err != nil {
		return err
	}
	defer d.close()
	dryRun := c.Bool("dry-run")
	bars := installBars(e.stderr, c.Bool("json"), dryRun)
	o.Meter = bars
	if !c.Bool("no-reboot") && !dryRun {
		o.Reboot = rebootFunc(cfg.RebootCommand, log)
	}
	ag, err := agent.New(o)
	if err != nil {
		return err
	}
	defer ag.Close()
	res := &installResult{Source: src.URL, Size: src.Size, Class: c.String("class"), DryRun: dryRun}
	dep, err := ag.InstallLocal(ctx, agent.LocalInstall{Source: src, Adaptive: af, Class: c.String("class"), NoReboot: c.Bool("no-reboot"), DryRun: dryRun})
	bars.End(err)
	res.record(dep)
	switch {
	case errors.Is(err, agent.ErrRebooting):
		res.Pending, res.Rebooting, err = true, true, nil
	case err == nil:
		res.Pending = dep != nil && dep.Phase == agent.PhasePending
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		err = exitcode.WithCode(exitcode.IO, fmt.Errorf("install interrupted; run the same command again to resume: %w", err))
	default:
		err = fmt.Errorf("install %s: %w", c.Args().First(), err)
	}
	if res.Pending {
		// What the bootloader will do, as it says itself (also what aduagent status shows).
		if st, serr := d.backend.State(); serr != nil {
			log.Warn("the bank is pending, but the bootloader state cannot be read back", "err", serr)
		} else {
			res.Bootloader = &st
		}
	}
	if c.Bool("json") {
		return cliapp.JSONVerdict(e.stdout, res, err, func(ok bool, code int, msg string) {
			res.OK, res.ExitCode, res.Error = ok, code, msg
		})
	}
	if err != nil {
		return err
	}
	printInstall(e.stdout, res)
	return nil
}

// record takes what the install (nil: none) did: its banks and copies and, of a single
// step, the slot, the format and the image's facts.
func (r *installResult) record(dep *agent.Deployment) {
	if dep == nil {
		return
	}
	r.Bank, r.From, r.Copies = dep.Bank, dep.From, copiesOf(dep)
	if len(dep.Steps) != 1 {
		return
	}
	st := dep.Steps[0]
	r.Class, r.Slot, r.Format, r.Adaptive = st.Class, st.Slot, st.Progress.Format, st.Progress.Adaptive
	if info := st.Progress.Info; info != nil {
		r.Version, r.KeyID, r.Bytes = info.Version, info.KeyID, info.RawSize
		if r.Format == "" {
			r.Format = info.Format
		}
	}
}

func printInstall(w io.Writer, r *installResult) {
	if r.DryRun {
		fmt.Fprintf(w, "checked %s (dry run: nothing written)\n", r.Source)
	} else {
		fmt.Fprintf(w, "installed %s\n", r.Source)
	}
	fmt.Fprintf(w, "  slot:    %s (class %s, bank %s; running bank %s)\n", r.Slot, r.Class, r.Bank, r.From)
	format := r.Format
	if r.KeyID != "" {
		format += ", signed by key " + r.KeyID
	}
	fmt.Fprintf(w, "  format:  %s\n", format)
	if r.Version != "" {
		fmt.Fprintf(w, "  version: %s\n", r.Version)
	}
	printAdaptive(w, r)
	if r.DryRun {
		fmt.Fprintf(w, "  bytes:   %d would be written (file %d)\n", r.Bytes, r.Size)
		printCopies(w, r)
		fmt.Fprintf(w, "bank %s would be marked pending\n", r.Bank)
		return
	}
	fmt.Fprintf(w, "  bytes:   %d written (file %d)\n", r.Bytes, r.Size)
	printCopies(w, r)
	if !r.Pending {
		return
	}
	pending := "bank " + r.Bank + " is pending"
	if st := r.Bootloader; st != nil && st.Pending != "" {
		pending += ": " + trialString(*st)
	}
	if r.Rebooting {
		fmt.Fprintf(w, "%s; rebooting into it\n", pending)
		return
	}
	fmt.Fprintf(w, "%s; the next reboot boots it on trial, and aduagent run confirms it after its health checks (or aduagent mark-good)\n", pending)
}

// installBars shows the install's stages in plain lines on stderr (a device's console or
// log: no terminal bars on the device), or nowhere when the result is printed as JSON.
func installBars(stderr io.Writer, json, dryRun bool) *lines.Stages {
	if json {
		stderr = nil
	}
	return lines.NewStages(func(total int64, label string) lines.Bar { return lines.New(stderr, total, label) }, dryRun)
}

// printAdaptive says what an adaptive install fetched and reused, or would fetch.
func printAdaptive(w io.Writer, r *installResult) {
	ad := r.Adaptive
	switch {
	case ad == nil:
	case ad.Fallback != "":
		fmt.Fprintf(w, "  fetch:   the whole file (adaptive download not possible: %s)\n", ad.Fallback)
	case r.DryRun:
		fmt.Fprintf(w, "  fetch:   %d bytes of chunks would be fetched (file %d), the rest taken from bank %s (found by %s)\n", ad.Planned, r.Size, r.From, ad.Found)
	default:
		fmt.Fprintf(w, "  fetch:   %d bytes fetched in %d requests (file %d), %d bytes reused from bank %s (found by %s)\n", ad.Fetched, ad.Requests, r.Size, ad.Reused, r.From, ad.Found)
	}
}

// adaptiveFiles names the adaptive index and chunk store of --index and --chunks (both or
// neither).
func adaptiveFiles(ctx context.Context, hc *http.Client, index, chunks string) (*agent.AdaptiveFiles, error) {
	if index == "" && chunks == "" {
		return nil, nil
	}
	if index == "" || chunks == "" {
		return nil, exitcode.Usagef("--index and --chunks go together")
	}
	is, err := installSource(ctx, hc, index, -1)
	if err != nil {
		return nil, err
	}
	cs, err := installSource(ctx, hc, chunks, 0)
	if err != nil {
		return nil, err
	}
	return &agent.AdaptiveFiles{Index: is, Store: cs}, nil
}

// printCopies lists the slots filled from the running bank.
func printCopies(w io.Writer, r *installResult) {
	for _, c := range r.Copies {
		did := "copied"
		switch {
		case c.Identical:
			did = "already there, nothing written"
		case r.DryRun:
			did = "would be copied"
		}
		fmt.Fprintf(w, "  copy:    %s → %s (class %s, not in the file): %d bytes %s\n", c.From, c.Slot, c.Class, c.Bytes, did)
	}
}

// installSource turns FILE or URL into the agent's Source, with its size (size < 0: find it).
func installSource(ctx context.Context, hc *http.Client, arg string, size int64) (agent.Source, error) {
	u, err := url.Parse(arg)
	isURL := err == nil && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "file") && len(u.Scheme) > 1
	if !isURL {
		abs, err := filepath.Abs(arg)
		if err != nil {
			return agent.Source{}, exitcode.WithCode(exitcode.IO, err)
		}
		u = &url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
		if !strings.HasPrefix(u.Path, "/") {
			u.Path = "/" + u.Path // C:/… on Windows
		}
	}
	src := agent.Source{URL: u.String(), Size: size}
	if size >= 0 {
		return src, nil
	}
	switch u.Scheme {
	case "file":
		p := u.Path
		if len(p) >= 3 && p[0] == '/' && p[2] == ':' {
			p = p[1:] // /C:/… on Windows
		}
		fi, err := os.Stat(filepath.FromSlash(p))
		if err != nil {
			return src, exitcode.WithCode(exitcode.IO, err)
		}
		if !fi.Mode().IsRegular() {
			return src, exitcode.Usagef("%s is not a regular file (give --size for a device)", arg)
		}
		src.Size = fi.Size()
	default:
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(hctx, http.MethodHead, u.String(), nil)
		if err != nil {
			return src, exitcode.Usagef("%s: %v", arg, err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return src, exitcode.WithCode(exitcode.IO, fmt.Errorf("HEAD %s: %w", arg, err))
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return src, exitcode.WithCode(exitcode.IO, fmt.Errorf("HEAD %s: %s", arg, resp.Status))
		}
		if resp.ContentLength < 0 {
			return src, exitcode.Usagef("HEAD %s tells no Content-Length: give --size", arg)
		}
		src.Size = resp.ContentLength
	}
	return src, nil
}
