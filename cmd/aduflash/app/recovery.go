package app

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/gptdisk"
	"github.com/aduflash/aduflash/recovery/tftpserve"
	"github.com/aduflash/aduflash/recovery/ubootscript"
	"github.com/aduflash/aduflash/slots"
)

// recoveryFlags are the flags of aduflash script and aduflash recover that say what is
// written where: the device config, the images' trust, the bank, the GPT, the check.
func recoveryFlags() []cli.Flag {
	return slices.Concat([]cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "device config `FILE` ([slots], [uboot], [bootloader])", Value: cliapp.DefaultDeviceConfig, TakesFile: true},
	}, cliapp.TrustFlags(), []cli.Flag{
		&cli.BoolFlag{Name: "raw", Usage: "take the IMAGEs as they are, without signature checks"},
		&cli.StringFlag{Name: "bank", Usage: "the `BANK` written and made primary (default: the first bank)"},
		&cli.StringFlag{Name: "gpt", Usage: "the disk image or block device whose GPT places the GPT slots", TakesFile: true},
		&cli.StringFlag{Name: "check", Value: string(ubootscript.CheckSHA256), Usage: "how U-Boot checks images: sha256 or crc32 (faster; catches corruption, not forgery)"},
		&cli.BoolFlag{Name: "keep-env", Usage: "leave the board's environment as it is (no fresh env, no bank made primary)"},
	})
}

// recovery is a generated recovery: the verified images, as the TFTP server serves them, and
// the script that writes them into the bank's slots, checked in U-Boot against the catalog's
// values.
type recovery struct {
	slots   *slots.Config
	bank    string
	catalog *tftpserve.Catalog
	writes  []ubootscript.Write
	script  *ubootscript.Script
}

// newRecovery verifies the IMAGE arguments ([CLASS=]FILE) into the catalog they are served
// from and generates the script: what aduflash script prints and aduflash recover runs.
// Close releases the catalog.
func (e *env) newRecovery(c *cli.Context) (*recovery, error) {
	raw, pubs, keyring := c.Bool("raw"), c.StringSlice("pub"), c.String("keyring")
	if raw == (len(pubs) > 0 || keyring != "") {
		return nil, exitcode.Usagef("%s: give --pub or --keyring to verify the images, or --raw to take them as they are", c.Command.HelpName)
	}
	board, err := loadBoard(c)
	if err != nil {
		return nil, err
	}
	var kr *image.Keyring
	if !raw {
		if kr, err = image.LoadTrust(keyring, pubs); err != nil {
			return nil, err
		}
	}
	r := &recovery{slots: board.Slots, bank: c.String("bank")}
	if r.bank == "" && len(board.Slots.Banks) > 0 {
		r.bank = board.Slots.Banks[0]
	}
	if err := r.serve(c, e.verifyMeter(c), kr, raw); err != nil {
		r.Close()
		return nil, err
	}
	r.script, err = ubootscript.Generate(board, r.writes, ubootscript.Options{Bank: r.bank, Check: ubootscript.Check(c.String("check")), KeepEnv: c.Bool("keep-env")})
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close releases the catalog's folders.
func (r *recovery) Close() {
	if r.catalog != nil {
		r.catalog.Close()
	}
}

// serve verifies the images into the catalog and makes each a write into the bank's slot of
// its class, with the facts of the bytes served.
func (r *recovery) serve(c *cli.Context, meter func(string, int64) tftpserve.Meter, kr *image.Keyring, raw bool) error {
	args := c.Args().Slice()
	paths := make([]string, len(args))
	for i, arg := range args {
		if _, path, named := strings.Cut(arg, "="); named {
			paths[i] = path
		} else {
			paths[i] = arg
		}
	}
	var err error
	if r.catalog, err = tftpserve.OpenFiles(c.Context, paths, tftpserve.Options{Keyring: kr, Raw: raw, Progress: meter}); err != nil {
		return err
	}
	for i, arg := range args {
		class, _, _ := strings.Cut(arg, "=")
		if class == arg {
			class = ""
		}
		f, err := r.catalog.Lookup(filepath.Base(paths[i]))
		if err != nil {
			return err
		}
		if !raw && f.Format == tftpserve.FormatRaw {
			return exitcode.InvalidInput(fmt.Errorf("%s: neither an aduimg nor an MCUboot image (--raw takes any file)", paths[i]))
		}
		slot, err := slotOf(r.slots, r.bank, class, f.SlotClass, paths[i])
		if err != nil {
			return err
		}
		r.writes = append(r.writes, ubootscript.Write{Slot: slot, Image: ubootscript.Image{Name: f.Name, Size: f.Size, CRC32: uint32(f.CRC32), SHA256: f.SHA256}})
	}
	return nil
}

// verifyMeter shows the verification of each image on a terminal.
func (e *env) verifyMeter(c *cli.Context) func(string, int64) tftpserve.Meter {
	bars := progress.Output(e.stderr, c.Bool("json"))
	if !progress.IsTerminal(bars) {
		bars = nil
	}
	return func(name string, size int64) tftpserve.Meter { return progress.New(bars, size, "verify "+name) }
}

// loadBoard reads the config's sections and the GPT the script needs.
func loadBoard(c *cli.Context) (ubootscript.Board, error) {
	path := c.String("config")
	var b ubootscript.Board
	var err error
	if b.Slots, err = slots.LoadConfig(path); err != nil {
		return b, err
	}
	if b.UBoot, err = ubootscript.LoadConfig(path); err != nil {
		return b, err
	}
	if !c.Bool("keep-env") {
		bc, err := bootloader.LoadConfig(path)
		if err != nil {
			return b, err
		}
		b.Env = &bc
	}
	if disk := c.String("gpt"); disk != "" {
		f, err := os.Open(disk)
		if err != nil {
			return b, err
		}
		defer f.Close()
		if b.GPT, err = gptdisk.Read(f); err != nil {
			return b, fmt.Errorf("%s: %w", disk, err)
		}
		b.GPTName = filepath.Base(disk)
	}
	return b, nil
}

// slotOf returns the slot an image goes to: bank's slot of the class the argument names, or
// the image's, or the config's only class.
func slotOf(cfg *slots.Config, bank, class, imgClass, path string) (string, error) {
	switch {
	case class != "" && imgClass != "" && class != imgClass:
		return "", exitcode.InvalidInput(fmt.Errorf("%s: the image is signed for slot class %q, not %q", path, imgClass, class))
	case class == "":
		class = imgClass
	}
	if class == "" {
		classes := cfg.BankedClasses()
		if len(classes) != 1 {
			return "", exitcode.Usagef("%s: name its slot class (CLASS=%s; the config has %s)", path, path, strings.Join(classes, ", "))
		}
		class = classes[0]
	}
	for _, s := range cfg.ForClass(class) {
		if s.Bank == bank || s.Bank == "" {
			return s.Name, nil
		}
	}
	return "", fmt.Errorf("%w: %s: no slot of class %q in bank %q", slots.ErrUnknownSlot, path, class, bank)
}
