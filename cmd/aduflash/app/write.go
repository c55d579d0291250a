package app

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/infile"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/slots"
)

func (e *env) writeCommand() *cli.Command {
	return &cli.Command{
		Name:      "write",
		Usage:     "write an image into a slot, a device or a file, then read it back and verify it",
		ArgsUsage: "IMAGE TARGET",
		Description: `IMAGE is an aduimg image (verified while it streams: signature first, then every chunk),
an MCUboot image (streamed too: its hash and signature, at its end, are checked before its
TLV areas are written; --pub), or, with --raw, any file written as it is. TARGET is a slot
of the --config file ("rootfs-b" or "B/rootfs"), an MTD character device (/dev/mtdN: erase,
NAND bad blocks), a block device or partition, or a file (created if missing, never
truncated). Blocks whose content is already identical are not written again. After the
write the target is read back: every chunk hash of an aduimg image, the hash of an MCUboot
image over what was written, and for a raw image every unit written (checked against the
CRC-32C of the data; units found identical were compared as they were skipped).

With --config, slots of the running bank, and any target that is (or holds) their storage,
are refused; the running bank comes from the kernel command line or the bootloader, as the
config's [slots] section says. An aduimg image naming a slot class must go to a slot of
that class. Trust comes from --pub (repeatable) or a --keyring file.

--dry-run reads the whole image and checks it as a real run does (signature, every chunk or
the MCUboot hash and signature, its fit in the target, the slot class, the running bank) and
writes nothing: the target is not even created.

Exit codes: 0 written and verified (or, with --dry-run, would be); 1 bad image or signature,
image too large for the target, slot class mismatch, or a target in the running bank; 2
usage error; 3 I/O error (including a read-back mismatch) or the running bank cannot be told.

EXAMPLE:
   aduflash write --pub release.pub.pem rootfs-1.2.0.aduimg sdcard.img
   aduflash write --dry-run --config ` + cliapp.DefaultDeviceConfig + ` --pub release.pub.pem rootfs-1.2.0.aduimg B/rootfs
   aduflash write --config ` + cliapp.DefaultDeviceConfig + ` --keyring /etc/aduflash/keyring.toml rootfs-1.2.0.aduimg B/rootfs
   aduflash write --pub mcu.pub.pem app.signed.bin /dev/mtd4
   aduflash write --raw --json u-boot.bin /dev/mmcblk0boot0`,
		Flags: slices.Concat([]cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "device config `FILE` (TOML with a [slots] section): slot names, running-bank protection", TakesFile: true},
		}, cliapp.TrustFlags(), []cli.Flag{
			&cli.BoolFlag{Name: "raw", Usage: "write IMAGE as it is, without signature checks"},
			cliapp.JSONFlag("the result"),
			&cli.BoolFlag{Name: "no-verify", Usage: "skip the read-back pass after writing (the image is still verified while it streams)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "read and check everything (image, slot, fit) but write nothing; exit as a real run would"},
			// Roots of a fake or mounted system, for tests and offline use.
			&cli.StringFlag{Name: "dev-root", Hidden: true},
			&cli.StringFlag{Name: "sysfs-root", Hidden: true},
			&cli.StringFlag{Name: "cmdline-file", Hidden: true},
		}),
		Action: e.write,
	}
}

type writeResult struct {
	cliapp.Outcome
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
	DryRun   bool        `json:"dry_run,omitempty"`
	Seconds  float64     `json:"seconds"`
}

func (e *env) write(c *cli.Context) error {
	if err := cliapp.Args(c, 2, 2, "IMAGE TARGET"); err != nil {
		return err
	}
	res := &writeResult{Image: c.Args().Get(0), Target: c.Args().Get(1), DryRun: c.Bool("dry-run")}
	err := e.doWrite(c, res)
	if c.Bool("json") {
		return cliapp.JSONVerdict(e.stdout, res, err, res.Mark)
	}
	if err != nil {
		return err
	}
	what := res.Format
	if res.Version != "" {
		what += " " + res.Version
	}
	if res.DryRun {
		fmt.Fprintf(e.stdout, "%s (%s) -> %s: dry run: %s verified, fits, nothing written, %.1fs\n", res.Image, what, res.Target,
			progress.Size(res.Size), res.Seconds)
		return nil
	}
	fmt.Fprintf(e.stdout, "%s (%s) -> %s: %s, %s written, %s unchanged", res.Image, what, res.Target,
		progress.Size(res.Size), progress.Size(res.Stats.BytesWritten), progress.Size(res.Stats.BytesSkipped))
	if n := res.Stats.BadSkipped + res.Stats.BadGrown; n > 0 {
		fmt.Fprintf(e.stdout, ", %d bad blocks skipped (%d new)", n, res.Stats.BadGrown)
	}
	fmt.Fprintf(e.stdout, ", verified, %.1fs\n", res.Seconds)
	return nil
}

// doWrite resolves the target, opens the image, and installs it through package install.
func (e *env) doWrite(c *cli.Context, res *writeResult) error {
	raw := c.Bool("raw")
	pubs, keyring := c.StringSlice("pub"), c.String("keyring")
	if raw && (len(pubs) > 0 || keyring != "") {
		return exitcode.Usagef("%s: --raw writes without checking signatures; drop --pub/--keyring", c.Command.HelpName)
	}
	l, slot, err := e.target(c, res)
	if err != nil {
		return err
	}
	f, size, err := infile.OpenSized(res.Image)
	if err != nil {
		return err
	}
	defer f.Close()
	if res.Format, err = sniff(c, res.Image, f, raw, len(pubs) > 0 || keyring != ""); err != nil {
		return err
	}
	// Refuse the running bank before reading anything big.
	target, err := l.Prepare(slot)
	if err != nil {
		return err
	}
	res.Capacity = target.Capacity()
	in := &install.Installer{Raw: raw, NoReadBack: c.Bool("no-verify"), DryRun: res.DryRun}
	if !raw {
		if in.Keyring, err = image.LoadTrust(keyring, pubs); err != nil {
			return err
		}
	}
	bars := progress.NewStages(progress.Output(e.stderr, c.Bool("json")), res.DryRun)
	start := time.Now()
	in.Meter = bars
	rec, err := in.Install(c.Context, install.Source{Size: size, Local: f}, target, nil)
	bars.End(err)
	res.Seconds = time.Since(start).Seconds()
	if i := rec.Info; i != nil {
		res.Format, res.Version, res.Size = i.Format, i.Version, i.RawSize
	}
	res.Stats, res.Verified = rec.Stats, err == nil && !res.DryRun && !in.NoReadBack
	return err
}

// target resolves TARGET: a slot of --config, a device or a file.
func (e *env) target(c *cli.Context, res *writeResult) (*slots.Layout, *slots.Slot, error) {
	var cfg *slots.Config
	if p := c.String("config"); p != "" {
		var err error
		if cfg, err = slots.LoadConfig(p); err != nil {
			return nil, nil, err
		}
	}
	l := slots.NewLayout(cfg, slots.Env{Dev: c.String("dev-root"), Sysfs: c.String("sysfs-root"), Cmdline: c.String("cmdline-file")})
	target, err := l.Target(res.Target)
	if err != nil {
		return nil, nil, err
	}
	if !target.AdHoc() {
		res.Slot, res.Class, res.Bank = target.Name, target.Class, target.Bank
	}
	return l, target, nil
}

// sniff tells the format of the image file called name before anything else is read: an
// image needs keys, a file that is no image needs --raw.
func sniff(c *cli.Context, name string, f io.ReaderAt, raw, keys bool) (string, error) {
	if raw {
		return install.FormatRaw, nil
	}
	prefix := make([]byte, install.SniffSize)
	n, _ := f.ReadAt(prefix, 0)
	format := install.Sniff(prefix[:n])
	if format == "" {
		return install.FormatRaw, exitcode.InvalidInput(fmt.Errorf("%s: neither an aduimg nor an MCUboot image (--raw writes any file unverified)", name))
	}
	if !keys {
		return format, exitcode.Usagef("%s: an %s image needs --pub or --keyring (or --raw)", c.Command.HelpName, format)
	}
	return format, nil
}
