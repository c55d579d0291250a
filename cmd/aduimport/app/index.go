package app

import (
	"bufio"
	"cmp"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/infile"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/cmd/internal/progress"
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
the index (the chunks' sizes and SHA-256, bound to the image's signed header)
and the chunk store (each chunk compressed on its own, fetched by HTTP Range).
Default names: IMAGE without .aduimg, plus .aduidx and .aduchunks.
See docs/adaptive.md.

EXAMPLE:
   aduimport index --pub release.pub.pem rootfs-1.3.0.aduimg
   aduimport manifest create ... --file rootfs-1.3.0.aduimg,downloadHandler=aduflash/adaptive:1 \
       --related-file rootfs-1.3.0.aduidx --related-file rootfs-1.3.0.aduchunks`,
		Flags: append(trustFlags(),
			&cli.StringFlag{Name: "index", Usage: "index `FILE` to write (default IMAGE.aduidx)", TakesFile: true},
			&cli.StringFlag{Name: "store", Usage: "chunk store `FILE` to write (default IMAGE.aduchunks)", TakesFile: true},
			&cli.StringFlag{Name: "chunks", Value: "2KiB,8KiB,32KiB", Usage: "chunk sizes `MIN,AVG,MAX` (AVG a power of two)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
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
	base := strings.TrimSuffix(path, ".aduimg")
	idxPath, storePath := cmp.Or(c.String("index"), base+".aduidx"), cmp.Or(c.String("store"), base+".aduchunks")
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
	bar := progress.New(progress.Output(e.stderr, c.Bool("json")), size, "index")
	x, err := adaptive.IndexImage(bar.Reader(bufio.NewReaderSize(f, 1<<20)), kr, params, store)
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
	if c.Bool("json") {
		return cliapp.WriteJSON(e.stdout, struct {
			Index  string `json:"index"`
			Store  string `json:"store"`
			Chunks int    `json:"chunks"`
			Size   int64  `json:"store_size"`
		}{idxPath, storePath, len(x.Entries), x.StoreSize})
	}
	fmt.Fprintf(e.stdout, "%s: %d chunks of %s payload (%d…%d…%d bytes); store %s: %s\n",
		idxPath, len(x.Entries), progress.Size(x.RawSize), params.Min, params.Avg, params.Max, storePath, progress.Size(x.StoreSize))
	return nil
}

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
