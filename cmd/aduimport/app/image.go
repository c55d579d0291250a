package app

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/infile"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/bytesize"
	"github.com/aduflash/aduflash/internal/limitread"
)

func (e *env) signCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "sign a payload into an aduimg image (streaming, chunked, optionally zstd-compressed)",
		ArgsUsage: "PAYLOAD",
		Description: `Reads PAYLOAD (a file or a block device) once and writes a signed aduimg image:
a signed header with the metadata and the SHA-256 of every chunk, then the chunks,
each compressed on its own. The image is written to a temporary file beside -o and
renamed into place only when complete (a device or FIFO is written through). Memory stays bounded whatever the payload size;
compression uses every core.

EXAMPLE:
   aduimport sign --key release.pem --version 1.2.0 --slot-class rootfs \
       --compat manufacturer=contoso,model=toaster -o rootfs-1.2.0.aduimg rootfs.ext4`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Aliases: []string{"k"}, Usage: "private key `PEM` file (aduimport keygen or imgtool keygen)", TakesFile: true},
			&cli.StringFlag{Name: "version", Usage: "update `VERSION` the image carries, e.g. 1.2.0"},
			&cli.StringFlag{Name: "slot-class", Usage: "slot `CLASS` the payload is written to, e.g. rootfs, kernel, firmware"},
			&cli.StringFlag{Name: "compress", Value: "zstd", Usage: "chunk compression: zstd or none"},
			&cli.StringFlag{Name: "chunk-size", Value: "1MiB", Usage: "raw bytes per chunk (bytes, or with KiB/MiB)"},
			&cli.StringSliceFlag{Name: "compat", Usage: "compatibility `k=v[,k=v...]` the device must match (repeatable)"},
			&cli.StringSliceFlag{Name: "meta", Usage: "free-form metadata `k=v[,k=v...]` (repeatable)"},
			&cli.Uint64Flag{Name: "security-counter", Usage: "anti-rollback `COUNTER`: devices refuse images below their own"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "image `FILE` to write", TakesFile: true},
			cliapp.JSONFlag("the result"),
		},
		Action: e.sign,
	}
}

func (e *env) sign(c *cli.Context) error {
	if err := args(c, 1, 1, "PAYLOAD"); err != nil {
		return err
	}
	if err := need(c, "key", "version", "output"); err != nil {
		return err
	}
	comp, err := image.ParseCompression(c.String("compress"))
	if err != nil {
		return exitcode.WithCode(exitcode.Usage, err)
	}
	chunk, err := bytesize.Parse(c.String("chunk-size"))
	if err != nil || chunk <= 0 || chunk > 1<<31 {
		return exitcode.Usagef("--chunk-size %q: want a positive size like 1048576 or 1MiB", c.String("chunk-size"))
	}
	compat, err := parseKVFlag("--compat", c.StringSlice("compat"))
	if err != nil {
		return err
	}
	meta, err := parseKVFlag("--meta", c.StringSlice("meta"))
	if err != nil {
		return err
	}
	created, err := buildTime(c)
	if err != nil {
		return err
	}
	key, err := image.LoadPrivateKey(c.String("key"))
	if err != nil {
		return err
	}
	in, size, err := infile.OpenSized(c.Args().First())
	if err != nil {
		return err
	}
	defer in.Close()

	outPath := c.String("output")
	out, err := outfile.Create(outPath, 0o644)
	if err != nil {
		return err
	}
	defer out.Abort()
	bar := progress.New(progress.Output(e.stderr, c.Bool("json")), size, "sign")
	h, total, err := image.Sign(out, bar.Reader(bufio.NewReaderSize(in, 1<<20)), size, key, image.SignOptions{
		Version:         c.String("version"),
		SlotClass:       c.String("slot-class"),
		Compatibility:   compat,
		Meta:            meta,
		SecurityCounter: c.Uint64("security-counter"),
		ChunkSize:       int(chunk),
		Compression:     comp,
		Created:         created,
	})
	bar.End(err)
	if err != nil {
		return err
	}
	if err := out.Commit(); err != nil {
		return err
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, struct {
			Image string        `json:"image"`
			Size  int64         `json:"size"`
			Head  *image.Header `json:"header"`
		}{outPath, total, h})
	}
	fmt.Fprintf(e.stdout, "%s: %s payload %s → %s image, %d chunk(s), %s, key %s (%s)\n",
		outPath, h.Version, progress.Size(h.RawSize), progress.Size(total), len(h.Chunks), h.Compression, h.KeyID, h.KeyType)
	fmt.Fprintf(e.stdout, "payload sha256 %s\n", h.PayloadSHA256)
	return nil
}

func (e *env) verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify an aduimg image: signature, every chunk, the whole payload",
		ArgsUsage: "IMAGE",
		Description: `Checks the header signature against the trusted keys, then streams the image and
checks every chunk's SHA-256, the whole payload's SHA-256, its size and that nothing
follows the last chunk. Exit 0 only when the image is valid, 1 when it is not.
Trust comes from --pub (repeatable) or a --keyring file, which can also revoke key ids.

EXAMPLE:
   aduimport verify --pub release.pub.pem rootfs-1.2.0.aduimg
   aduimport verify --keyring /etc/aduflash/keyring.toml --max-size 512MiB rootfs-1.2.0.aduimg`,
		Flags: append(cliapp.TrustFlags(),
			&cli.StringFlag{Name: "max-size", Usage: "refuse payloads larger than `SIZE` (the target slot's size)"},
			cliapp.JSONFlag("the verdict"),
		),
		Action: e.verify,
	}
}

// trust loads the keyring of --pub and --keyring, one of which is needed.
func trust(c *cli.Context) (*image.Keyring, error) {
	pubs := c.StringSlice("pub")
	if len(pubs) == 0 && c.String("keyring") == "" {
		return nil, exitcode.Usagef("%s: give --pub KEY.pub.pem or --keyring FILE", c.Command.HelpName)
	}
	return image.LoadTrust(c.String("keyring"), pubs)
}

func (e *env) verify(c *cli.Context) error {
	if err := args(c, 1, 1, "IMAGE"); err != nil {
		return err
	}
	var maxSize int64
	if s := c.String("max-size"); s != "" {
		n, err := bytesize.Parse(s)
		if err != nil || n <= 0 {
			return exitcode.Usagef("--max-size %q: want a positive size like 536870912 or 512MiB", s)
		}
		maxSize = n
	}
	kr, err := trust(c)
	if err != nil {
		return err
	}
	path := c.Args().First()
	f, size, err := infile.OpenSized(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bar := progress.New(progress.Output(e.stderr, c.Bool("json")), size, "verify")
	h, err := image.Verify(bar.Reader(bufio.NewReaderSize(f, 1<<20)), image.VerifyOptions{Keyring: kr, MaxRawSize: maxSize})
	bar.End(err)
	if err != nil && !image.Rejected(err) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if c.Bool("json") {
		v := struct {
			Image string        `json:"image"`
			Valid bool          `json:"valid"`
			Error string        `json:"error,omitempty"`
			Head  *image.Header `json:"header,omitempty"`
		}{Image: path, Valid: err == nil, Head: h}
		if err != nil {
			v.Error = err.Error()
		}
		if jerr := cliapp.WriteJSON(e.stdout, v); jerr != nil {
			return jerr
		}
		if err != nil {
			return cliapp.Silent(exitcode.InvalidInput(err))
		}
		return nil
	}
	if err != nil {
		return exitcode.InvalidInput(fmt.Errorf("%s: INVALID: %w", path, err))
	}
	name := kr.Name(h.KeyID)
	if name != "" {
		name = " " + strconv.Quote(name)
	}
	fmt.Fprintf(e.stdout, "%s: valid: version %s, %s payload, %d chunk(s), signed by %s key%s %s\n",
		path, h.Version, progress.Size(h.RawSize), len(h.Chunks), h.KeyType, name, h.KeyID)
	return nil
}

func (e *env) inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show an image's header (aduimg or MCUboot, detected by magic) without verifying it",
		ArgsUsage: "IMAGE",
		Description: `Prints what an image says about itself. It checks the format but NOT the
signature: use verify (aduimg) or mcuboot verify for that.

EXAMPLE:
   aduimport inspect rootfs-1.2.0.aduimg
   aduimport inspect --json zephyr.signed.bin | jq .version`,
		Flags: []cli.Flag{
			cliapp.JSONFlag("the header"),
			&cli.BoolFlag{Name: "chunks", Usage: "list every chunk (aduimg, text output)"},
		},
		Action: e.inspect,
	}
}

// maxMCUbootImage bounds what inspect reads into memory for an MCUboot image.
const maxMCUbootImage = 64 << 20

func (e *env) inspect(c *cli.Context) error {
	if err := args(c, 1, 1, "IMAGE"); err != nil {
		return err
	}
	path := c.Args().First()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	prefix, err := br.Peek(16)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return err
	}
	switch {
	case image.IsImage(prefix):
		h, err := image.ParseHeader(br)
		if err != nil {
			return exitcode.InvalidInput(fmt.Errorf("%s: %w", path, err))
		}
		if c.Bool("json") {
			return cliapp.WriteJSON(e.stdout, struct {
				Format string `json:"format"`
				*image.Header
			}{"aduimg", h})
		}
		return writeHeaderText(e.stdout, path, h, c.Bool("chunks"))
	case mcuboot.IsImage(prefix):
		data, err := limitread.All(br, maxMCUbootImage)
		if errors.Is(err, limitread.ErrTooLarge) {
			return exitcode.InvalidInput(fmt.Errorf("%s: larger than %s: not an MCU image", path, progress.Size(maxMCUbootImage)))
		}
		if err != nil {
			return err
		}
		img, err := mcuboot.Parse(data)
		if err != nil {
			return exitcode.InvalidInput(fmt.Errorf("%s: %w", path, err))
		}
		if c.Bool("json") {
			return cliapp.WriteJSON(e.stdout, struct {
				Format string `json:"format"`
				*mcuboot.Image
			}{"mcuboot", img})
		}
		fmt.Fprintf(e.stdout, "%s: MCUboot image (signature not checked; use aduimport mcuboot verify)\n", path)
		return img.WriteText(e.stdout)
	}
	return exitcode.InvalidInput(fmt.Errorf("%s: %w: neither an aduimg nor an MCUboot image (first bytes % x)", path, image.ErrBadMagic, prefix[:min(len(prefix), 8)]))
}

func writeHeaderText(w io.Writer, path string, h *image.Header, chunks bool) error {
	bw := bufio.NewWriter(w)
	p := func(k, format string, a ...any) {
		fmt.Fprintf(bw, "%-17s "+format+"\n", append([]any{k + ":"}, a...)...)
	}
	p("image", "%s (aduimg format %d, %s)", path, h.FormatVersion, progress.Size(h.ImageSize))
	p("signature", "not checked (use aduimport verify)")
	p("key", "%s, id %s", h.KeyType, h.KeyID)
	p("version", "%s", h.Version)
	if h.SlotClass != "" {
		p("slot class", "%s", h.SlotClass)
	}
	p("security counter", "%d", h.SecurityCounter)
	if len(h.Compatibility) > 0 {
		p("compatibility", "%s", joinKV(h.Compatibility))
	}
	if len(h.Meta) > 0 {
		p("meta", "%s", joinKV(h.Meta))
	}
	p("created", "%s", h.Created.UTC().Format("2006-01-02T15:04:05Z"))
	p("payload", "%d bytes (%s), sha256 %s", h.RawSize, progress.Size(h.RawSize), h.PayloadSHA256)
	var framed int64
	for _, ch := range h.Chunks {
		framed += int64(ch.Length)
	}
	ratio := ""
	if h.RawSize > 0 {
		ratio = fmt.Sprintf(" (%.1f%% of raw)", 100*float64(framed)/float64(h.RawSize))
	}
	p("chunks", "%d × %s, %s, %s of frames%s", len(h.Chunks), progress.Size(int64(h.ChunkSize)), h.Compression, progress.Size(framed), ratio)
	p("header", "%d bytes", h.Size)
	if chunks {
		fmt.Fprintf(bw, "\n%6s %12s %10s %12s %10s  %s\n", "chunk", "raw offset", "raw size", "offset", "length", "sha256")
		for _, ch := range h.Chunks {
			fmt.Fprintf(bw, "%6d %12d %10d %12d %10d  %s\n", ch.Index, ch.RawOffset, ch.RawSize, ch.Offset, ch.Length, ch.SHA256)
		}
	}
	return bw.Flush()
}

func joinKV(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}

// parseKVFlag turns repeatable "k=v,k=v" flag values into one map; urfave has already split
// the values at commas.
func parseKVFlag(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range vals {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, exitcode.Usagef("%s %q: want key=value", flag, kv)
		}
		if _, dup := m[k]; dup {
			return nil, exitcode.Usagef("%s: key %q given twice", flag, k)
		}
		m[k] = v
	}
	return m, nil
}

// buildTime is the creation time to stamp into an artifact: the hidden --created flag
// (RFC 3339) if the command has it, else $SOURCE_DATE_EPOCH (seconds since 1970, the
// reproducible-builds convention), else the zero time, which means "now".
func buildTime(c *cli.Context) (time.Time, error) {
	if c.IsSet("created") {
		t, err := time.Parse(time.RFC3339, c.String("created"))
		if err != nil {
			return time.Time{}, exitcode.Usagef("%s: --created: %v", c.Command.HelpName, err)
		}
		return t.UTC(), nil
	}
	if s, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, exitcode.Usagef("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, nil
}
