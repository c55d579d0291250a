package app

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/infile"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/slots"
)

func (e *env) writeCommand() *cli.Command {
	return &cli.Command{
		Name:      "write",
		Usage:     "write an image into a slot, a device or a file, then read it back and verify it",
		ArgsUsage: "IMAGE TARGET",
		Description: `IMAGE is an aduimg image (verified while it streams: signature first, then every chunk),
an MCUboot image (its hash and signature verified before anything is written; --pub), or,
with --raw, any file written as it is. TARGET is a slot of the --config file ("rootfs-b"
or "B/rootfs"), an MTD character device (/dev/mtdN: erase, NAND bad blocks), a block
device or partition, or a file (created if missing, never truncated). Blocks whose
content is already identical are not written again. After the write the target is read back: every chunk hash
of an aduimg image, every byte of an MCUboot image, and for a raw image every unit written
(checked against the CRC-32C of the data; units found identical were compared as they were
skipped).

With --config, slots of the running bank, and any target that is (or holds) their storage,
are refused; the running bank comes from the kernel command line or the bootloader, as the
config's [slots] section says. An aduimg image naming a slot class must go to a slot of
that class. Trust comes from --pub (repeatable) or a --keyring file.

Exit codes: 0 written and verified; 1 bad image or signature, image too large for the
target, slot class mismatch, or a target in the running bank; 2 usage error; 3 I/O error
(including a read-back mismatch) or the running bank cannot be told.

EXAMPLE:
   aduflash write --pub release.pub.pem rootfs-1.2.0.aduimg sdcard.img
   aduflash write --config ` + cliapp.DefaultDeviceConfig + ` --keyring /etc/aduflash/keyring.toml rootfs-1.2.0.aduimg B/rootfs
   aduflash write --pub mcu.pub.pem app.signed.bin /dev/mtd4
   aduflash write --raw --json u-boot.bin /dev/mmcblk0boot0`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "device config `FILE` (TOML with a [slots] section): slot names, running-bank protection", TakesFile: true},
			&cli.StringSliceFlag{Name: "pub", Usage: "trusted public key `PEM` file (repeatable)", TakesFile: true},
			&cli.StringFlag{Name: "keyring", Usage: "keyring `FILE` (TOML: trusted keys and revoked key ids)", TakesFile: true},
			&cli.BoolFlag{Name: "raw", Usage: "write IMAGE as it is, without signature checks"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&cli.BoolFlag{Name: "no-verify", Usage: "skip the read-back pass after writing (the image is still verified while it streams)"},
			// Roots of a fake or mounted system, for tests and offline use.
			&cli.StringFlag{Name: "dev-root", Hidden: true},
			&cli.StringFlag{Name: "sysfs-root", Hidden: true},
			&cli.StringFlag{Name: "cmdline-file", Hidden: true},
		},
		Action: e.write,
	}
}

type writeResult struct {
	OK       bool        `json:"ok"`
	Image    string      `json:"image"`
	Target   string      `json:"target"`
	Slot     string      `json:"slot,omitempty"`
	Class    string      `json:"class,omitempty"`
	Bank     string      `json:"bank,omitempty"`
	Format   string      `json:"format"`
	Version  string      `json:"version,omitempty"`
	Size     int64       `json:"size"`
	Capacity int64       `json:"capacity,omitempty"`
	Stats    slots.Stats `json:"stats"`
	Verified bool        `json:"verified"`
	Seconds  float64     `json:"seconds"`
	Error    string      `json:"error,omitempty"`
	ExitCode int         `json:"exit_code"`
}

func (r *writeResult) mark(ok bool, exitCode int, msg string) {
	r.OK, r.ExitCode, r.Error = ok, exitCode, msg
}

func (e *env) write(c *cli.Context) error {
	if err := cliapp.Args(c, 2, 2, "IMAGE TARGET"); err != nil {
		return err
	}
	res := &writeResult{Image: c.Args().Get(0), Target: c.Args().Get(1)}
	err := e.doWrite(c, res)
	if c.Bool("json") {
		return cliapp.JSONVerdict(e.stdout, res, err, res.mark)
	}
	if err != nil {
		return err
	}
	what := res.Format
	if res.Version != "" {
		what += " " + res.Version
	}
	fmt.Fprintf(e.stdout, "%s (%s) -> %s: %s, %s written, %s unchanged", res.Image, what, res.Target,
		progress.Size(res.Size), progress.Size(res.Stats.BytesWritten), progress.Size(res.Stats.BytesSkipped))
	if n := res.Stats.BadSkipped + res.Stats.BadGrown; n > 0 {
		fmt.Fprintf(e.stdout, ", %d bad blocks skipped (%d new)", n, res.Stats.BadGrown)
	}
	fmt.Fprintf(e.stdout, ", verified, %.1fs\n", res.Seconds)
	return nil
}

func (e *env) doWrite(c *cli.Context, res *writeResult) error {
	raw := c.Bool("raw")
	pubs, keyring := c.StringSlice("pub"), c.String("keyring")
	if raw && (len(pubs) > 0 || keyring != "") {
		return exitcode.Usagef("%s: --raw writes without checking signatures; drop --pub/--keyring", c.Command.HelpName)
	}
	var cfg *slots.Config
	if p := c.String("config"); p != "" {
		var err error
		if cfg, err = slots.LoadConfig(p); err != nil {
			return classify(err)
		}
	}
	l := slots.NewLayout(cfg, slots.Env{Dev: c.String("dev-root"), Sysfs: c.String("sysfs-root"), Cmdline: c.String("cmdline-file")})
	target, err := l.Target(res.Target)
	if err != nil {
		return classify(err)
	}
	if !target.AdHoc() {
		res.Slot, res.Class, res.Bank = target.Name, target.Class, target.Bank
	}

	f, size, err := infile.OpenSized(res.Image)
	if err != nil {
		return err
	}
	defer f.Close()
	var prefix [16]byte
	n, _ := f.ReadAt(prefix[:], 0)
	res.Format = "raw"
	if !raw {
		switch {
		case image.IsImage(prefix[:n]):
			res.Format = "aduimg"
		case mcuboot.IsImage(prefix[:n]):
			res.Format = "mcuboot"
		default:
			return exitcode.InvalidInput(fmt.Errorf("%s: neither an aduimg nor an MCUboot image (--raw writes any file unverified)", res.Image))
		}
		if len(pubs) == 0 && keyring == "" {
			return exitcode.Usagef("%s: an %s image needs --pub or --keyring (or --raw)", c.Command.HelpName, res.Format)
		}
	}

	// Refuse the running bank before reading anything big.
	if err := l.CheckWritable(target); err != nil {
		return classify(err)
	}
	capacity, err := l.Capacity(target)
	if err != nil {
		return classify(err)
	}
	res.Capacity = capacity
	out := progress.Output(e.stderr, c.Bool("json"))
	start := time.Now()
	defer func() { res.Seconds = time.Since(start).Seconds() }()

	switch res.Format {
	case "aduimg":
		kr, err := cliapp.Keyring(keyring, pubs)
		if err != nil {
			return err
		}
		// The header is verified before anything else is read or allocated; nothing in it counts
		// before that, not even its slot class.
		h, err := image.ReadHeader(io.NewSectionReader(f, 0, size), image.VerifyOptions{Keyring: kr, MaxRawSize: capacity})
		if err != nil {
			return classify(fmt.Errorf("%s: %w", res.Image, err))
		}
		res.Version, res.Size = h.Version, h.RawSize
		if !target.AdHoc() && h.SlotClass != "" && h.SlotClass != target.Class {
			return exitcode.InvalidInput(fmt.Errorf("%s is a %s image; slot %s holds %s", res.Image, h.SlotClass, target.Name, target.Class))
		}
		src := infile.ReadAhead(io.NewSectionReader(f, h.Size, size-h.Size), readAheadBlock, readAheadDepth)
		defer src.Close()
		rd, err := image.NewChunkReader(h, src, 0)
		if err != nil {
			return err
		}
		return e.stream(c, l, target, res, rd, out, []slots.Option{slots.WithChunkSize(h.ChunkSize)},
			func(w slots.Writer, ra io.ReaderAt) error {
				err := h.VerifyAt(ra)
				if errors.Is(err, image.ErrChunkHash) {
					err = fmt.Errorf("%w: %w", slots.ErrMismatch, err)
				}
				return err
			})
	case "mcuboot":
		data, err := io.ReadAll(io.LimitReader(f, mcuboot.MaxSize+1))
		if err != nil {
			return err
		}
		if len(data) > mcuboot.MaxSize {
			return exitcode.InvalidInput(fmt.Errorf("%s: %w: more than %d bytes", res.Image, mcuboot.ErrTooLarge, mcuboot.MaxSize))
		}
		img, err := verifyMCUboot(data, keyring, pubs)
		if err != nil {
			return classify(fmt.Errorf("%s: %w", res.Image, err))
		}
		res.Version, res.Size = img.Header.Version.String(), int64(len(data))
		return e.stream(c, l, target, res, bytes.NewReader(data), out, nil,
			func(w slots.Writer, ra io.ReaderAt) error {
				return slots.VerifyReader(ra, res.Size, bytes.NewReader(data))
			})
	default:
		res.Size = size
		src := infile.ReadAhead(io.NewSectionReader(f, 0, size), readAheadBlock, readAheadDepth)
		defer src.Close()
		return e.stream(c, l, target, res, src, out, nil,
			func(w slots.Writer, ra io.ReaderAt) error {
				// Units found identical were compared byte for byte while writing; the others
				// are read back against the CRC-32C of what was written.
				return w.VerifyWritten()
			})
	}
}

// stream writes src (res.Size bytes) into target, finishes, and reads it back with verify.
func (e *env) stream(c *cli.Context, l *slots.Layout, target *slots.Slot, res *writeResult, src io.Reader, out io.Writer,
	opts []slots.Option, verify func(slots.Writer, io.ReaderAt) error) error {
	if res.Capacity > 0 && res.Size > res.Capacity {
		return exitcode.InvalidInput(fmt.Errorf("%s: %w: %d bytes, %s takes %d", res.Image, slots.ErrTooLarge, res.Size, res.Target, res.Capacity))
	}
	if c.Bool("no-verify") {
		opts = append(opts, slots.WithoutReadBack())
	}
	w, err := l.OpenWriter(target, res.Size, nil, opts...)
	if err != nil {
		return classify(err)
	}
	defer w.Close()
	bar := progress.New(out, res.Size, "write")
	dst := bar.Writer(&ctxWriter{ctx: c.Context, w: w})
	_, err = io.CopyBuffer(dst, src, make([]byte, 1<<20))
	if err == nil {
		err = w.Finish()
	}
	bar.End(err)
	res.Stats = w.Stats()
	if err != nil {
		return classify(fmt.Errorf("writing %s: %w", res.Target, err))
	}
	if c.Bool("no-verify") {
		return classify(w.Close())
	}
	vbar := progress.New(out, res.Size, "verify")
	err = verify(w, &countingReaderAt{ra: w, bar: vbar})
	vbar.End(err)
	if err != nil {
		return classify(fmt.Errorf("reading %s back: %w", res.Target, err))
	}
	res.Verified = true
	if err := w.Close(); err != nil {
		return classify(err)
	}
	return nil
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

type countingReaderAt struct {
	ra  io.ReaderAt
	bar *progress.Bar
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.ra.ReadAt(p, off)
	c.bar.Add(int64(n))
	return n, err
}

// verifyMCUboot checks data against every trusted key until one verifies.
func verifyMCUboot(data []byte, keyring string, pubs []string) (*mcuboot.Image, error) {
	var keys []crypto.PublicKey
	for _, p := range pubs {
		k, err := image.LoadPublicKey(p)
		if err != nil {
			return nil, cliapp.KeyError(err)
		}
		keys = append(keys, k)
	}
	if keyring != "" {
		kr, err := image.LoadKeyring(keyring)
		if err != nil {
			return nil, cliapp.KeyError(err)
		}
		for _, id := range kr.KeyIDs() {
			if k, err := kr.Lookup(id); err == nil {
				keys = append(keys, k)
			}
		}
	}
	var first error
	for _, k := range keys {
		img, err := mcuboot.Verify(data, k)
		if err == nil {
			return img, nil
		}
		if first == nil || !errors.Is(err, mcuboot.ErrKeyMismatch) {
			first = err
		}
	}
	if first == nil {
		first = errors.New("no trusted key")
	}
	return nil, exitcode.InvalidInput(first)
}

// classify maps errors to exit codes: a bad image, key, config or target is invalid input
// (1), an unknown slot name a usage error (2), the rest (I/O, read-back mismatch, running
// bank unknown) 3.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ec *exitcode.Error
	switch {
	case errors.As(err, &ec):
		return err
	case errors.Is(err, slots.ErrMismatch), errors.Is(err, slots.ErrActiveUnknown), errors.Is(err, slots.ErrReserveExhausted):
		return exitcode.WithCode(exitcode.IO, err)
	case errors.Is(err, slots.ErrUnknownSlot):
		return exitcode.WithCode(exitcode.Usage, err)
	case image.Rejected(err), errors.Is(err, slots.ErrTooLarge), errors.Is(err, slots.ErrActiveSlot), errors.Is(err, slots.ErrConfig),
		errors.Is(err, mcuboot.ErrBadMagic), errors.Is(err, mcuboot.ErrTruncated), errors.Is(err, mcuboot.ErrMalformed),
		errors.Is(err, mcuboot.ErrHashMismatch), errors.Is(err, mcuboot.ErrKeyMismatch), errors.Is(err, mcuboot.ErrBadSignature),
		errors.Is(err, mcuboot.ErrTooLarge):
		return exitcode.InvalidInput(err)
	}
	return err
}

// The image is read this far ahead of the writer, in a goroutine, so that reading the next
// MiB overlaps with writing the current one.
const (
	readAheadBlock = 1 << 20
	readAheadDepth = 4
)
