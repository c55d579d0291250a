package app

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/infile"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/bytesize"
)

func (e *env) indexCommand() *cli.Command {
	return &cli.Command{
		Name:      "index",
		Usage:     "write the adaptive index and chunk store of an aduimg image (devices then fetch only the chunks they lack)",
		ArgsUsage: "IMAGE",
		Description: `Verifies IMAGE (signature, every chunk) while it cuts the payload into
content-defined chunks, and writes two files for the image's related files:
the index (the chunks' sizes and hashes, bound to the image's signed header)
and the chunk store (each chunk compressed on its own, fetched by HTTP Range).
Default names: IMAGE without .aduimg, plus .aduidx and .aduchunks.
With --base, the image the devices run now (verified with the same keys):
a chunk of IMAGE that it lacks also gets a delta frame against the chunks
of the base most like it (the one sharing the most content, and its
neighbours), which a device that holds those chunks fetches instead (zstd
with them as dictionary, each checked first; the result is checked against
the chunk's hash as any other).
See docs/adaptive.md.

EXAMPLE:
   aduimport index --pub release.pub.pem rootfs-1.3.0.aduimg
   aduimport index --pub release.pub.pem --base rootfs-1.2.0.aduimg rootfs-1.3.0.aduimg
   aduimport manifest create ... --file rootfs-1.3.0.aduimg \
       --related-file rootfs-1.3.0.aduidx --related-file rootfs-1.3.0.aduchunks`,
		Flags: append(cliapp.TrustFlags(),
			&cli.StringFlag{Name: "index", Usage: "index `FILE` to write (default IMAGE.aduidx)", TakesFile: true},
			&cli.StringFlag{Name: "store", Usage: "chunk store `FILE` to write (default IMAGE.aduchunks)", TakesFile: true},
			&cli.StringFlag{Name: "base", Usage: "write delta frames against the payload of the aduimg image `FILE` (what devices run now)", TakesFile: true},
			&cli.StringFlag{Name: "chunks", Value: chunkDefault, Usage: "chunk sizes `MIN,AVG,MAX` (AVG a power of two)"},
			cliapp.JSONFlag("the result"),
		),
		Action: e.index,
	}
}

func (e *env) index(c *cli.Context) error {
	if err := args(c, 1, 1, "IMAGE"); err != nil {
		return err
	}
	params, err := parseChunkParams(c.String("chunks"))
	if err != nil {
		return err
	}
	kr, err := trust(c)
	if err != nil {
		return err
	}
	path := c.Args().First()
	stem := strings.TrimSuffix(path, ".aduimg")
	idxPath, storePath := cmp.Or(c.String("index"), stem+".aduidx"), cmp.Or(c.String("store"), stem+".aduchunks")
	f, size, err := infile.OpenSized(path)
	if err != nil {
		return err
	}
	defer f.Close()
	store, err := outfile.Create(storePath, 0o644)
	if err != nil {
		return err
	}
	defer store.Abort()
	base, err := e.basePayload(c, kr)
	if err != nil {
		return err
	}
	if base != nil {
		defer base.R.(*os.File).Close()
	}
	bar := progress.New(progress.Output(e.stderr, c.Bool("json")), size, "index")
	x, err := adaptive.IndexImage(bar.Reader(bufio.NewReaderSize(f, 1<<20)), kr, params, store, base)
	bar.End(err)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := store.Commit(); err != nil {
		return err
	}
	if err := outfile.WriteFile(idxPath, x.Encode(), 0o644); err != nil {
		return err
	}
	inBase := 0
	if x.Base != nil {
		inBase = len(x.Base.At)
	}
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, struct {
			Index  string `json:"index"`
			Store  string `json:"store"`
			Chunks int    `json:"chunks"`
			Size   int64  `json:"store_size"`
			InBase int    `json:"in_base"`
		}{idxPath, storePath, len(x.Entries), x.StoreSize, inBase})
	}
	fmt.Fprintf(e.stdout, "%s: %d chunks of %s payload (%d…%d…%d bytes); store %s: %s\n",
		idxPath, len(x.Entries), progress.Size(x.RawSize), params.Min, params.Avg, params.Max, storePath, progress.Size(x.StoreSize))
	if x.Base != nil {
		fmt.Fprintf(e.stdout, "base map: %d distinct chunks placed in the base payload (%s); a device that holds it reads them there instead of cutting its slot\n",
			inBase, progress.Size(x.Base.Size))
	}
	return nil
}

// basePayload verifies the --base image and returns its payload, in an unlinked temporary
// file (nil without --base).
func (e *env) basePayload(c *cli.Context, kr *image.Keyring) (*adaptive.Base, error) {
	path := c.String("base")
	if path == "" {
		return nil, nil
	}
	f, _, err := infile.OpenSized(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rd, err := image.NewReader(bufio.NewReaderSize(f, 1<<20), image.VerifyOptions{Keyring: kr})
	if err != nil {
		return nil, fmt.Errorf("--base %s: %w", path, err)
	}
	tmp, err := os.CreateTemp("", "aduimport-base-")
	if err != nil {
		return nil, exitcode.WithCode(exitcode.IO, err)
	}
	os.Remove(tmp.Name())
	n, err := io.Copy(tmp, rd)
	if err != nil {
		tmp.Close()
		return nil, fmt.Errorf("--base %s: %w", path, err)
	}
	return &adaptive.Base{R: tmp, Size: n}, nil
}

// chunkDefault is the default of --chunks: adaptive.DefaultParams.
var chunkDefault = fmt.Sprintf("%dKiB,%dKiB,%dKiB", adaptive.DefaultParams.Min>>10, adaptive.DefaultParams.Avg>>10, adaptive.DefaultParams.Max>>10)

// parseChunkParams reads MIN,AVG,MAX.
func parseChunkParams(s string) (adaptive.Params, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return adaptive.Params{}, exitcode.Usagef("--chunks %q: want MIN,AVG,MAX like 2KiB,8KiB,32KiB", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := bytesize.Parse(strings.TrimSpace(p))
		if err != nil || v <= 0 || v > adaptive.MaxChunk {
			return adaptive.Params{}, exitcode.Usagef("--chunks %q: %q is not a size up to 1MiB", s, p)
		}
		n[i] = int(v)
	}
	p := adaptive.Params{Min: n[0], Avg: n[1], Max: n[2]}
	if err := p.Check(); err != nil {
		return p, exitcode.WithCode(exitcode.Usage, err)
	}
	return p, nil
}
