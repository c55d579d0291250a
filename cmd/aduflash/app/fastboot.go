package app

import (
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/infile"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/recovery/fastboot"
)

func (e *env) fastbootCommand() *cli.Command {
	return &cli.Command{
		Name:  "fastboot",
		Usage: "flash a partition of a board through U-Boot's fastboot over UDP, the image verified first",
		Description: `Talks to a board whose U-Boot runs "fastboot udp" (UDP port 5554 unless --udp names
another): the fastboot protocol's UDP transport, each packet sent again until answered.
The flags come before the subcommand.

flash verifies IMAGE as "aduflash write" does before a byte of it is sent: an aduimg image
goes to the board as its payload, every chunk checked as it streams; an MCUboot image whole,
its hash and signature checked before its last bytes go; with --raw any file as it is. The
payload must fit U-Boot's download buffer (getvar max-download-size) and the partition
(getvar partition-size, where U-Boot tells it): otherwise nothing is sent. A chunk that
fails its check ends the download there: the flash command is never sent, and the
partition keeps what it held.

Exit codes: 0 done; 1 bad image or signature, image too large for the download buffer or
the partition; 2 usage error; 3 no answer from the board, a protocol error, a FAIL of the
board (unknown partition or variable, a write error), or a file that cannot be read.

EXAMPLE:
   aduflash fastboot --udp 192.168.1.50 --pub release.pub.pem flash rootfs_a rootfs-1.2.0.aduimg
   aduflash fastboot --udp 127.0.0.1:15554 getvar version
   aduflash fastboot --udp 192.168.1.50 reboot`,
		Flags: slices.Concat([]cli.Flag{
			&cli.StringFlag{Name: "udp", Usage: "the board's `HOST[:PORT]` (port 5554 by default)"},
		}, cliapp.TrustFlags(), []cli.Flag{
			&cli.BoolFlag{Name: "raw", Usage: "flash IMAGE as it is, without signature checks"},
			&cli.DurationFlag{Name: "timeout", Value: fastboot.DefaultTimeout, Usage: "wait `DURATION` for an answer before sending a packet again (each packet up to 120 times, the first 4 times)"},
			cliapp.JSONFlag("the result"),
		}),
		Subcommands: []*cli.Command{
			{
				Name:      "flash",
				Usage:     "verify IMAGE, download it into U-Boot's buffer and write it to PARTITION",
				ArgsUsage: "PARTITION IMAGE",
				Description: `PARTITION is a name U-Boot's fastboot knows: a GPT partition of the MMC device its
CONFIG_FASTBOOT_FLASH_MMC_DEV names, or the whole device (CONFIG_FASTBOOT_MMC_USER_NAME,
e.g. "mmc0"); NAND partitions on NAND builds. U-Boot writes whole 512-byte blocks: after an
image that is not a multiple of 512 bytes, the rest of the last block gets what U-Boot's
buffer held there.

EXAMPLE:
   aduflash fastboot --udp 192.168.1.50 --pub release.pub.pem flash rootfs_a rootfs-1.2.0.aduimg
   aduflash fastboot --udp 192.168.1.50 --keyring keyring.toml --json flash mcu app.signed.bin
   aduflash fastboot --udp 192.168.1.50 --raw flash mmc0 sdcard.img`,
				Action: e.fastbootFlash,
			},
			{
				Name:      "getvar",
				Usage:     "print a variable of the board (version, max-download-size, partition-size:NAME, ...)",
				ArgsUsage: "NAME",
				Description: `EXAMPLE:
   aduflash fastboot --udp 192.168.1.50 getvar version
   aduflash fastboot --udp 192.168.1.50 getvar partition-size:rootfs_a`,
				Action: e.fastbootGetvar,
			},
			{
				Name:  "reboot",
				Usage: "reboot the board (U-Boot answers, then resets)",
				Description: `EXAMPLE:
   aduflash fastboot --udp 192.168.1.50 reboot`,
				Action: e.fastbootReboot,
			},
		},
	}
}

// fastbootResult is what a fastboot subcommand prints with --json.
type fastbootResult struct {
	cliapp.Outcome
	Device    string          `json:"device"`
	Command   string          `json:"command"`
	Partition string          `json:"partition,omitempty"`
	Image     string          `json:"image,omitempty"`
	Format    string          `json:"format,omitempty"`
	Version   string          `json:"version,omitempty"`
	Size      int64           `json:"size,omitempty"` // bytes downloaded
	Name      string          `json:"name,omitempty"`
	Value     *string         `json:"value,omitempty"`
	Stats     *fastboot.Stats `json:"stats,omitempty"`
	Seconds   float64         `json:"seconds"`
}

// fastbootRun runs a subcommand: check (what needs no board; nil: nothing), then do in a
// session with the board of --udp. It prints the result: with --json as JSON, else the line
// text returns.
func (e *env) fastbootRun(c *cli.Context, res *fastbootResult, check func() error, do func(*fastboot.Client) error, text func() string) error {
	if err := cliapp.Need(c, "udp"); err != nil {
		return err
	}
	return e.remoteRun(c, &res.Seconds, res, res.Mark, check, func() error { return e.session(c, res, do) }, text)
}

// remoteRun runs a command on a remote device: check (what needs no device; nil: nothing),
// then session, timed into *seconds. It prints the result: with --json res as JSON (mark
// records the outcome in it), else the line text returns.
func (e *env) remoteRun(c *cli.Context, seconds *float64, res any, mark func(bool, int, string), check, session func() error, text func() string) error {
	start := time.Now()
	var err error
	if check != nil {
		err = check()
	}
	if err == nil {
		err = session()
	}
	*seconds = time.Since(start).Seconds()
	if c.Bool("json") {
		return cliapp.JSONVerdict(e.stdout, res, err, mark)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, text())
	return nil
}

// session dials the board of --udp, its INFO messages shown beside the progress, and runs do.
func (e *env) session(c *cli.Context, res *fastbootResult, do func(*fastboot.Client) error) error {
	res.Device = fastboot.Addr(c.String("udp"))
	info := progress.Output(e.stderr, c.Bool("json"))
	opts := fastboot.Options{Timeout: c.Duration("timeout"), Info: func(msg string) {
		if info != nil {
			fmt.Fprintf(info, "%s: %s\n", res.Device, msg)
		}
	}}
	dial := func() (*fastboot.Client, error) { return fastboot.Dial(c.Context, res.Device, opts) }
	return deviceSession(res.Device, dial, &res.Stats, do)
}

// statClient is a client of a remote device that counts its traffic.
type statClient[S any] interface {
	Close() error
	Stats() S
}

// deviceSession runs do with the client open makes, keeps the client's counters in *stats,
// and names device in an error.
func deviceSession[C statClient[S], S any](device string, open func() (C, error), stats **S, do func(C) error) error {
	client, err := open()
	if err == nil {
		defer client.Close()
		err = do(client)
		st := client.Stats()
		*stats = &st
	}
	if err != nil {
		return fmt.Errorf("%s: %w", device, err)
	}
	return nil
}

func (e *env) fastbootFlash(c *cli.Context) error {
	if err := cliapp.Args(c, 2, 2, "PARTITION IMAGE"); err != nil {
		return err
	}
	res := &fastbootResult{Command: "flash", Partition: c.Args().Get(0), Image: c.Args().Get(1)}
	var (
		f       *os.File
		payload *install.Payload
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	open := func() (err error) {
		var size int64
		if f, size, err = infile.OpenSized(res.Image); err != nil {
			return err
		}
		payload, err = e.openPayload(c, res, f, size)
		return err
	}
	flash := func(client *fastboot.Client) error {
		bar := progress.New(progress.Output(e.stderr, c.Bool("json")), res.Size, "download")
		err := client.Flash(c.Context, res.Partition, bar.Reader(payload), res.Size)
		bar.End(err)
		return err
	}
	return e.fastbootRun(c, res, open, flash, func() string {
		what, checked := res.Format, "verified, "
		if res.Version != "" {
			what += " " + res.Version
		}
		if res.Format == install.FormatRaw {
			checked = ""
		}
		return fmt.Sprintf("%s (%s) -> %s on %s: %s %sdownloaded and flashed, %d packets (%d sent again), %.1fs",
			res.Image, what, res.Partition, res.Device, progress.Size(res.Size), checked, res.Stats.Packets, res.Stats.Retransmits, res.Seconds)
	})
}

// openPayload checks what can be checked of IMAGE before the board is reached: the format,
// the keys, an aduimg's header and signature, an MCUboot image's header.
func (e *env) openPayload(c *cli.Context, res *fastbootResult, f io.ReaderAt, size int64) (*install.Payload, error) {
	raw := c.Bool("raw")
	pubs, keyring := c.StringSlice("pub"), c.String("keyring")
	if raw && (len(pubs) > 0 || keyring != "") {
		return nil, exitcode.Usagef("%s: --raw flashes without checking signatures; drop --pub/--keyring", c.Command.HelpName)
	}
	var err error
	if res.Format, err = sniff(c, res.Image, f, raw, len(pubs) > 0 || keyring != ""); err != nil {
		return nil, err
	}
	var kr *image.Keyring
	if !raw {
		if kr, err = image.LoadTrust(keyring, pubs); err != nil {
			return nil, err
		}
	}
	p, err := install.OpenPayload(f, size, kr, raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", res.Image, err)
	}
	res.Version, res.Size = p.Info.Version, p.Info.RawSize
	return p, nil
}

func (e *env) fastbootGetvar(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "NAME"); err != nil {
		return err
	}
	res := &fastbootResult{Command: "getvar", Name: c.Args().First()}
	getvar := func(client *fastboot.Client) error {
		v, err := client.GetVar(c.Context, res.Name)
		if err == nil {
			res.Value = &v
		}
		return err
	}
	return e.fastbootRun(c, res, nil, getvar, func() string { return *res.Value })
}

func (e *env) fastbootReboot(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	res := &fastbootResult{Command: "reboot"}
	reboot := func(client *fastboot.Client) error { return client.Reboot(c.Context) }
	return e.fastbootRun(c, res, nil, reboot, func() string { return res.Device + ": rebooting" })
}
