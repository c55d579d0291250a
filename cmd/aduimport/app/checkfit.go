package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/limitread"
	"github.com/aduflash/aduflash/slots"
)

func (e *env) checkFitCommand() *cli.Command {
	return &cli.Command{
		Name:      "check-fit",
		Usage:     "check at build time that images fit the slots their class targets",
		ArgsUsage: "IMAGE...",
		Description: `For every IMAGE, finds the slots of its class in the --config file's [slots] section (one
per bank) and checks that it fits each of them, from the sizes the config gives (the device
is not there at build time):

   aduimg   the header's slot class and raw payload size (the signature is not checked)
   MCUboot  image size (up to the end of its TLV area, or the padded size) plus the trailer
            imgtool reserves (mcuboot_align, mcuboot_max_align, mcuboot_max_sectors,
            mcuboot_overwrite_only of the slot); the class comes from --class

A slot's room is its size; for type = "nand" minus reserve_blocks × erase_size (the
bad-block reserve). A slot without a size cannot be checked and counts as not fitting.
Prints a table, or JSON with --json. Exit 0 only if every image fits every slot of its
class, 1 otherwise (2 usage error, 3 an image that cannot be read).

EXAMPLE:
   aduimport check-fit --config examples/aduagent.toml rootfs-1.2.0.aduimg kernel-1.2.0.aduimg
   aduimport check-fit --config aduagent.toml --class firmware --json app.signed.bin`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "device config `FILE` (TOML with a [slots] section); required", TakesFile: true},
			&cli.StringFlag{Name: "class", Usage: "slot `CLASS` for images that name none (MCUboot images, aduimg without a class)"},
			cliapp.JSONFlag("the result"),
		},
		Action: e.checkFit,
	}
}

// fitRow is one image checked against one slot (Slot empty when no slot could be found).
type fitRow struct {
	Image     string `json:"image"`
	Format    string `json:"format,omitempty"`
	Class     string `json:"class,omitempty"`
	Slot      string `json:"slot,omitempty"`
	Needs     int64  `json:"needs"`
	SlotSize  int64  `json:"slot_size,omitempty"`
	Reserve   int64  `json:"reserve,omitempty"` // bytes of NAND bad-block reserve taken off SlotSize
	Available int64  `json:"available,omitempty"`
	Fits      bool   `json:"fits"`
	Problem   string `json:"problem,omitempty"`
}

type fitResult struct {
	Fits bool     `json:"fits"`
	Rows []fitRow `json:"results"`
}

func (e *env) checkFit(c *cli.Context) error {
	if err := cliapp.Args(c, 1, -1, "IMAGE..."); err != nil {
		return err
	}
	if err := cliapp.Need(c, "config"); err != nil {
		return err
	}
	cfg, err := slots.LoadConfig(c.String("config"))
	if err != nil {
		return err
	}
	res := fitResult{Fits: true}
	for _, path := range c.Args().Slice() {
		rows, err := checkImageFit(cfg, path, c.String("class"))
		if err != nil {
			return err
		}
		for _, r := range rows {
			res.Fits = res.Fits && r.Fits
		}
		res.Rows = append(res.Rows, rows...)
	}
	if c.Bool("json") {
		if err := cliapp.WriteJSON(e.stdout, res); err != nil {
			return err
		}
	} else if err := writeFitTable(e.stdout, res); err != nil {
		return err
	}
	if !res.Fits {
		return cliapp.Silent(exitcode.InvalidInput(errors.New("some images do not fit")))
	}
	return nil
}

// checkImageFit returns one row per slot of the image's class. Only an unreadable file is
// an error; everything about the image itself becomes a row that does not fit.
func checkImageFit(cfg *slots.Config, path, class string) ([]fitRow, error) {
	row := fitRow{Image: path, Class: class}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var prefix [16]byte
	n, err := io.ReadFull(f, prefix[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var mcu *mcuboot.Image
	var mcuSize int
	switch {
	case image.IsImage(prefix[:n]):
		row.Format = "aduimg"
		h, err := image.ParseHeader(f)
		if err != nil {
			if !image.Rejected(err) {
				return nil, err
			}
			row.Problem = err.Error()
			return []fitRow{row}, nil
		}
		row.Needs = h.RawSize
		if h.SlotClass != "" {
			row.Class = h.SlotClass
		}
	case mcuboot.IsImage(prefix[:n]):
		row.Format = "mcuboot"
		data, err := limitread.All(f, mcuboot.MaxSize)
		if errors.Is(err, limitread.ErrTooLarge) {
			row.Problem = fmt.Sprintf("larger than %d bytes", mcuboot.MaxSize)
			return []fitRow{row}, nil
		}
		if err != nil {
			return nil, err
		}
		if mcu, err = mcuboot.Parse(data); err != nil {
			row.Problem = err.Error()
			return []fitRow{row}, nil
		}
		mcuSize = len(data)
	default:
		row.Problem = "neither an aduimg nor an MCUboot image"
		return []fitRow{row}, nil
	}
	if row.Class == "" {
		row.Problem = "the image names no slot class: give --class"
		return []fitRow{row}, nil
	}
	targets := cfg.ForClass(row.Class)
	if len(targets) == 0 {
		row.Problem = fmt.Sprintf("no slot of class %q in the config", row.Class)
		return []fitRow{row}, nil
	}
	var rows []fitRow
	for _, s := range targets {
		r := row
		r.Slot = s.Name
		r.SlotSize = int64(s.Size)
		if mcu != nil {
			trailer, err := mcuboot.TrailerSize(mcuboot.TrailerOptions{Align: s.MCUbootAlign, MaxAlign: s.MCUbootMaxAlign,
				MaxSectors: s.MCUbootMaxSectors, OverwriteOnly: s.MCUbootOverwriteOnly})
			if err != nil {
				r.Problem = fmt.Sprintf("slot %s: %v", s.Name, err)
				rows = append(rows, r)
				continue
			}
			r.Needs = int64(mcu.End() + trailer)
			if mcu.Trailer != nil || mcu.Padding > 0 {
				r.Needs = max(r.Needs, int64(mcuSize)) // already padded to a slot size
			}
		}
		switch {
		case s.Size == 0:
			r.Problem = "the slot has no size in the config"
		case s.Type == slots.TypeNAND && s.EraseSize == 0:
			r.Problem = "a nand slot needs erase_size to count its bad-block reserve"
		default:
			if s.Type == slots.TypeNAND {
				r.Reserve = int64(s.Reserve(cfg)) * int64(s.EraseSize)
			}
			r.Available = max(r.SlotSize-r.Reserve, 0)
			r.Fits = r.Needs <= r.Available
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func writeFitTable(w io.Writer, res fitResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tFORMAT\tCLASS\tSLOT\tNEEDS\tSLOT SIZE\tRESERVE\tFREE\tFITS")
	for _, r := range res.Rows {
		fits := "yes"
		if !r.Fits {
			fits = "NO"
			if r.Problem != "" {
				fits += ": " + r.Problem
			} else {
				fits += fmt.Sprintf(": %d bytes too large", r.Needs-r.Available)
			}
		}
		size, reserve, free := "-", "-", "-"
		if r.SlotSize > 0 {
			size, free = progress.Size(r.SlotSize), fmt.Sprint(r.Available-r.Needs)
		}
		if r.Reserve > 0 {
			reserve = progress.Size(r.Reserve)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Image, dash(r.Format), dash(r.Class), dash(r.Slot), r.Needs, size, reserve, free, fits)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
