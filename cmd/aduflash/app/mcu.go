package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/infile"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/smp"
)

// mcuFlags are the connection flags every mcu subcommand takes.
func mcuFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "port", Usage: "the MCU's serial line `TTY` (e.g. /dev/ttyACM0)", TakesFile: true},
		&cli.IntFlag{Name: "baud", Value: 115200, Usage: "the serial line's baud `RATE`"},
		&cli.StringFlag{Name: "udp", Usage: "the MCU's SMP server at `HOST[:PORT]` (port 1337 by default)"},
		&cli.IntFlag{Name: "line-size", Value: smp.DefaultLineSize, Usage: "longest serial line sent, in `BYTES` (markers and newline included; MCUs with a 128-byte line buffer need ≤ 128)"},
		&cli.IntFlag{Name: "mtu", Usage: "largest SMP packet in `BYTES` (default: the MCU's mcumgr params, else 256)"},
		&cli.DurationFlag{Name: "timeout", Value: smp.DefaultTimeout, Usage: "wait `DURATION` for a reply before sending a request again (3 times)"},
		cliapp.JSONFlag("the result"),
	}
}

func (e *env) mcuCommand() *cli.Command {
	return &cli.Command{
		Name:  "mcu",
		Usage: "update an MCU over mcumgr/SMP (serial or UDP): upload a verified MCUboot image, test, confirm, reset",
		Description: `Talks SMP (mcumgr) to an MCU that runs MCUboot: a Zephyr, Mynewt or NuttX application with
an SMP server, or MCUboot's own serial recovery mode (which also recovers an MCU whose
application does not start). The MCU is reached on a serial line (--port, the console
framing: base64 lines of at most --line-size bytes) or over UDP (--udp).

An update: "upload" sends the image into the MCU's upload slot (the secondary slot; MCUboot's
serial recovery writes the primary), "test" marks it to be tried at the next reset, "reset"
boots it, "confirm" makes it permanent; an image tested and not confirmed is reverted by
MCUboot at the reset after.

Exit codes: 0 done; 1 bad image or signature, an image too large for the slot, a hash that
is not an image; 2 usage error; 3 no answer from the MCU, a garbled reply, an error the MCU
answered, or a file that cannot be read.

EXAMPLE:
   aduflash mcu list --port /dev/ttyACM0
   aduflash mcu upload --port /dev/ttyACM0 --pub mcu.pub.pem app-1.2.0.signed.bin
   aduflash mcu test --port /dev/ttyACM0 app-1.2.0.signed.bin
   aduflash mcu reset --port /dev/ttyACM0
   aduflash mcu confirm --port /dev/ttyACM0`,
		Subcommands: []*cli.Command{
			{
				Name:      "upload",
				Usage:     "verify IMAGE (signature, header, slot size), then upload it into the MCU's upload slot",
				ArgsUsage: "IMAGE",
				Description: `IMAGE is an MCUboot image, verified before a byte is sent: its signature against --pub or
--keyring, its header, its hash, and its size against the slot (--slot-size, else the slot
size the MCU reports in its slot info, where it answers that). The upload goes on from where
the MCU stands: an MCU that resumes by the image's SHA-256 (Zephyr) continues an interrupted
upload by itself; with --resume the first frame asks the MCU for its offset instead of
starting over (MCUboot's serial recovery keeps it until it resets). Use --resume only for an
upload of the same IMAGE.

EXAMPLE:
   aduflash mcu upload --port /dev/ttyACM0 --pub mcu.pub.pem app-1.2.0.signed.bin
   aduflash mcu upload --udp 192.168.1.60 --keyring keyring.toml --slot-size 393216 --json app.signed.bin
   aduflash mcu upload --port /dev/ttyUSB0 --line-size 128 --pub mcu.pub.pem --resume app.signed.bin`,
				Flags: slices.Concat(mcuFlags(), cliapp.TrustFlags("key"), []cli.Flag{
					&cli.Int64Flag{Name: "slot-size", Usage: "the MCU's slot size in `BYTES` (default: from the MCU's slot info)"},
					&cli.BoolFlag{Name: "resume", Usage: "continue an interrupted upload of IMAGE from the offset the MCU reports"},
				}),
				Action: e.mcuUpload,
			},
			{
				Name:  "list",
				Usage: "show the MCU's images (slot, version, hash, active/confirmed/pending)",
				Description: `EXAMPLE:
   aduflash mcu list --port /dev/ttyACM0
   aduflash mcu list --udp 192.168.1.60 --json`,
				Flags:  mcuFlags(),
				Action: e.mcuList,
			},
			{
				Name:      "test",
				Usage:     "mark the image with HASH (or IMAGE's hash) to be tried at the next reset",
				ArgsUsage: "HASH|IMAGE",
				Description: `EXAMPLE:
   aduflash mcu test --port /dev/ttyACM0 app-1.2.0.signed.bin`,
				Flags:  mcuFlags(),
				Action: e.mcuState(false),
			},
			{
				Name:      "confirm",
				Usage:     "make the running image permanent (or the image with HASH, or IMAGE's hash)",
				ArgsUsage: "[HASH|IMAGE]",
				Description: `EXAMPLE:
   aduflash mcu confirm --port /dev/ttyACM0`,
				Flags:  mcuFlags(),
				Action: e.mcuState(true),
			},
			{
				Name:  "reset",
				Usage: "reset the MCU (sent once: a second reset would revert an image on test)",
				Description: `EXAMPLE:
   aduflash mcu reset --port /dev/ttyACM0`,
				Flags:  mcuFlags(),
				Action: e.mcuReset,
			},
			{
				Name:  "erase",
				Usage: "erase an image slot (the secondary by default)",
				Description: `EXAMPLE:
   aduflash mcu erase --port /dev/ttyACM0`,
				Flags:  append(mcuFlags(), &cli.IntFlag{Name: "slot", Value: 1, Usage: "the `SLOT` to erase"}),
				Action: e.mcuErase,
			},
			{
				Name:      "echo",
				Usage:     "send TEXT and print what the MCU echoes",
				ArgsUsage: "TEXT",
				Description: `EXAMPLE:
   aduflash mcu echo --port /dev/ttyACM0 hello`,
				Flags:  mcuFlags(),
				Action: e.mcuEcho,
			},
		},
	}
}

// mcuImage is a slot of the MCU's image list as printed.
type mcuImage struct {
	smp.SlotState
	Hash string `json:"hash"`
}

// mcuResult is what an mcu subcommand prints with --json.
type mcuResult struct {
	cliapp.Outcome
	Device  string     `json:"device"`
	Command string     `json:"command"`
	Image   string     `json:"image,omitempty"`
	Version string     `json:"version,omitempty"`
	Hash    string     `json:"hash,omitempty"`
	Size    int64      `json:"size,omitempty"`
	Images  []mcuImage `json:"images,omitempty"`
	Echo    *string    `json:"echo,omitempty"`
	Stats   *smp.Stats `json:"stats,omitempty"`
	Seconds float64    `json:"seconds"`

	endpoint smp.Endpoint
}

func (r *mcuResult) setImages(list []smp.SlotState) {
	r.Images = make([]mcuImage, len(list))
	for i, s := range list {
		r.Images[i] = mcuImage{SlotState: s, Hash: s.HashHex()}
	}
}

// mcuRun runs a subcommand: check (what needs no MCU; nil: nothing), then do with a client
// of the MCU of --port or --udp, and prints the result (remoteRun).
func (e *env) mcuRun(c *cli.Context, res *mcuResult, check func() error, do func(*smp.Client) error, text func() string) error {
	if err := e.mcuTarget(c, res); err != nil {
		return err
	}
	return e.remoteRun(c, &res.Seconds, res, res.Mark, check, func() error { return e.mcuSession(c, res, do) }, text)
}

// mcuTarget checks that exactly one of --port and --udp names the MCU.
func (e *env) mcuTarget(c *cli.Context, res *mcuResult) error {
	res.endpoint = smp.Endpoint{Port: c.String("port"), Baud: c.Int("baud"), LineSize: c.Int("line-size"), UDP: c.String("udp")}
	switch ep := res.endpoint; {
	case ep.Port != "" && ep.UDP != "":
		return exitcode.Usagef("%s: --port and --udp name two MCUs; give one", c.Command.HelpName)
	case ep.Port == "" && ep.UDP == "":
		return exitcode.Usagef("%s: missing --port or --udp", c.Command.HelpName)
	}
	res.Device = res.endpoint.String()
	return nil
}

// mcuSession connects to the MCU and runs do.
func (e *env) mcuSession(c *cli.Context, res *mcuResult, do func(*smp.Client) error) error {
	open := func() (*smp.Client, error) {
		t, err := smp.Open(c.Context, res.endpoint)
		if err != nil {
			return nil, err
		}
		return smp.NewClient(t, smp.Options{Timeout: c.Duration("timeout"), MaxPacket: c.Int("mtu")}), nil
	}
	return deviceSession(res.Device, open, &res.Stats, do)
}

// mcuPayload is an MCUboot image verified in memory before it is sent.
type mcuPayload struct {
	data []byte
	sha  []byte
	img  *mcuboot.Image
}

// loadMCUImage reads IMAGE and verifies it: an MCUboot image (not aduimg, not raw), signed
// by a trusted key, its hash and signature checked over every byte, at most max bytes
// (0: no limit known yet).
func loadMCUImage(c *cli.Context, path string, max int64) (*mcuPayload, error) {
	pubs, keyring := c.StringSlice("pub"), c.String("keyring")
	if len(pubs) == 0 && keyring == "" {
		return nil, exitcode.Usagef("%s: an MCU image needs --pub or --keyring", c.Command.HelpName)
	}
	f, size, err := infile.OpenSized(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if max <= 0 {
		max = mcuboot.MaxSize
	}
	if err := fits(path, size, max); err != nil {
		return nil, err
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if install.Sniff(data) != install.FormatMCUboot {
		return nil, exitcode.InvalidInput(fmt.Errorf("%s: not an MCUboot image (an MCU boots MCUboot images only)", path))
	}
	kr, err := image.LoadTrust(keyring, pubs)
	if err != nil {
		return nil, err
	}
	p, err := install.OpenPayload(bytes.NewReader(data), size, kr, false)
	if err == nil {
		_, err = io.Copy(io.Discard, p)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	img, err := mcuboot.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	return &mcuPayload{data: data, sha: sum[:], img: img}, nil
}

// fits refuses an image larger than max bytes (max ≤ 0: unknown).
func fits(path string, size, max int64) error {
	if max > 0 && size > max {
		return exitcode.InvalidInput(fmt.Errorf("%s: %w: the image is %d bytes, the slot takes %d (its size less MCUboot's trailer)", path, smp.ErrTooLarge, size, max))
	}
	return nil
}

// slotLimit is the largest image a slot of size bytes takes: its size less MCUboot's trailer.
func slotLimit(size int64) int64 {
	trailer, _ := mcuboot.TrailerSize(mcuboot.TrailerOptions{})
	return size - int64(trailer)
}

// deviceLimit asks the MCU's slot info for the largest image it takes (0: it does not say).
func deviceLimit(ctx context.Context, client *smp.Client) (int64, error) {
	info, err := client.SlotInfo(ctx)
	if errors.Is(err, smp.ErrDevice) {
		return 0, nil
	}
	if err != nil || len(info) == 0 {
		return 0, err
	}
	if info[0].MaxImageSize > 0 {
		return info[0].MaxImageSize, nil
	}
	var size int64
	for _, s := range info[0].Slots {
		size = max(size, s.Size)
	}
	if size == 0 {
		return 0, nil
	}
	return slotLimit(size), nil
}

func (e *env) mcuUpload(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "IMAGE"); err != nil {
		return err
	}
	res := &mcuResult{Command: "upload", Image: c.Args().First()}
	var p *mcuPayload
	check := func() (err error) {
		var limit int64
		if n := c.Int64("slot-size"); n > 0 {
			limit = slotLimit(n)
		}
		if p, err = loadMCUImage(c, res.Image, limit); err != nil {
			return err
		}
		res.Version, res.Size = p.img.Header.Version.Short(), int64(len(p.data))
		res.Hash = hex.EncodeToString(p.img.Hash())
		return nil
	}
	upload := func(client *smp.Client) error {
		if c.Int64("slot-size") == 0 {
			limit, err := deviceLimit(c.Context, client)
			if err != nil {
				return err
			}
			if err := fits(res.Image, res.Size, limit); err != nil {
				return err
			}
		}
		return e.sendImage(c, client, p)
	}
	return e.mcuRun(c, res, check, upload, func() string {
		return fmt.Sprintf("%s (mcuboot %s, hash %s) -> %s: %s verified and uploaded, %d requests (%d sent again), %.1fs\nnext: aduflash mcu test %s",
			res.Image, res.Version, res.Hash, res.Device, progress.Size(res.Size), res.Stats.Requests, res.Stats.Resent, res.Seconds, res.Hash)
	})
}

// sendImage uploads a verified image with a progress bar.
func (e *env) sendImage(c *cli.Context, client *smp.Client, p *mcuPayload) error {
	size := int64(len(p.data))
	var start int64
	if c.Bool("resume") {
		start = size - 1 // a one-byte frame the MCU answers with the offset it expects
	}
	bar := progress.New(progress.Output(e.stderr, c.Bool("json")), size, "upload")
	var shown int64
	err := client.Upload(c.Context, bytes.NewReader(p.data), size, p.sha, start, func(off int64) {
		if off > shown {
			bar.Add(off - shown)
			shown = off
		}
	})
	bar.End(err)
	return err
}

// hashArg reads HASH (hex) or the hash of the MCUboot image in file IMAGE.
func hashArg(arg string) ([]byte, error) {
	if data, err := os.ReadFile(arg); err == nil {
		img, err := mcuboot.Parse(data)
		if err != nil {
			return nil, exitcode.InvalidInput(fmt.Errorf("%s: %w", arg, err))
		}
		return img.Hash(), nil
	}
	h, err := hex.DecodeString(arg)
	if err != nil || len(h) < 16 {
		return nil, exitcode.InvalidInput(fmt.Errorf("%q is neither an image file nor an image hash in hex", arg))
	}
	return h, nil
}

func (e *env) mcuList(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	res := &mcuResult{Command: "list"}
	list := func(client *smp.Client) error {
		l, err := client.ImageState(c.Context)
		res.setImages(l)
		return err
	}
	return e.mcuRun(c, res, nil, list, func() string { return imageTable(res.Images) })
}

// imageTable prints an image list.
func imageTable(images []mcuImage) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "IMAGE\tSLOT\tVERSION\tSTATE\tHASH")
	for _, s := range images {
		var flags []string
		for _, f := range []struct {
			on   bool
			name string
		}{{s.Active, "active"}, {s.Confirmed, "confirmed"}, {s.Pending, "pending"}, {s.Permanent, "permanent"}, {!s.Bootable, "non-bootable"}} {
			if f.on {
				flags = append(flags, f.name)
			}
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\n", s.Image, s.Slot, s.Version, strings.Join(flags, ","), s.Hash)
	}
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// mcuState is test (confirm false) or confirm.
func (e *env) mcuState(confirm bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		res := &mcuResult{Command: "test"}
		min := 1
		if confirm {
			res.Command, min = "confirm", 0
		}
		if err := cliapp.Args(c, min, 1, "HASH or IMAGE"); err != nil {
			return err
		}
		var hash []byte
		check := func() (err error) {
			if c.NArg() == 1 {
				hash, err = hashArg(c.Args().First())
				res.Hash = hex.EncodeToString(hash)
			}
			return err
		}
		set := func(client *smp.Client) error {
			var l []smp.SlotState
			var err error
			if confirm {
				l, err = client.Confirm(c.Context, hash)
			} else {
				l, err = client.Test(c.Context, hash)
			}
			res.setImages(l)
			return err
		}
		return e.mcuRun(c, res, check, set, func() string { return imageTable(res.Images) })
	}
}

func (e *env) mcuReset(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	res := &mcuResult{Command: "reset"}
	reset := func(client *smp.Client) error { return client.Reset(c.Context) }
	return e.mcuRun(c, res, nil, reset, func() string { return res.Device + ": resetting" })
}

func (e *env) mcuErase(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	res := &mcuResult{Command: "erase"}
	erase := func(client *smp.Client) error { return client.Erase(c.Context, c.Int("slot")) }
	return e.mcuRun(c, res, nil, erase, func() string { return fmt.Sprintf("%s: slot %d erased", res.Device, c.Int("slot")) })
}

func (e *env) mcuEcho(c *cli.Context) error {
	if err := cliapp.Args(c, 1, 1, "TEXT"); err != nil {
		return err
	}
	res := &mcuResult{Command: "echo"}
	echo := func(client *smp.Client) error {
		s, err := client.Echo(c.Context, c.Args().First())
		res.Echo = &s
		return err
	}
	return e.mcuRun(c, res, nil, echo, func() string { return *res.Echo })
}
