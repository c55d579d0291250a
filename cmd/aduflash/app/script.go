package app

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/infile"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/internal/gptdisk"
	"github.com/aduflash/aduflash/recovery/ubootscript"
	"github.com/aduflash/aduflash/slots"
)

func (e *env) scriptCommand() *cli.Command {
	return &cli.Command{
		Name:      "script",
		Usage:     "generate the U-Boot recovery script that writes images into a bank over TFTP",
		ArgsUsage: "[CLASS=]IMAGE...",
		Description: `Writes the U-Boot commands that recover a board at its prompt: for each IMAGE, load it over
TFTP (under its file name), check it in RAM against the SHA-256 (or CRC-32) computed here,
write it into the bank's slot of its class and read the slot back; then U-Boot's default
environment with the bank primary (the [bootloader] preset's variables), saved to both env
copies, and reset. A failed check stops every later write.

The slots come from the config's [slots] section, where U-Boot finds them from its [uboot]
section (load_addr, load_size, mmc_dev, mtdids, mtdparts, ubi_part, sf_probe). A slot that
is a GPT partition is placed by the disk's own GPT: --gpt names the disk image or the
block device, and the script first checks that the board's GPT agrees.

An aduimg image is verified here and the script expects its payload (what aduflash serve
sends under the image's name), going to the slot of the image's class; an MCUboot image is
verified and sent as it is; --raw takes any file, CLASS= naming its slot class (needed
when the config has more than one). Trust comes from --pub or --keyring.

-o writes the commands as text (default: stdout unless --mkimage); --mkimage writes them as
a U-Boot script image for "source", byte for byte what mkimage -T script makes, its time
$SOURCE_DATE_EPOCH or now. At the U-Boot prompt: setenv serverip HOST (and tftpdstp PORT),
then tftpboot ${scriptaddr} recover.scr; source ${scriptaddr}.

Exit codes: 0 written; 1 bad image or signature, an image too large for its slot or the
board's RAM, a slot U-Boot cannot reach, a bad [uboot] section; 2 usage error (no --gpt
for a GPT slot, an unknown class or bank); 3 I/O error.

EXAMPLE:
   aduflash script --config board.toml --pub release.pub.pem --gpt sdcard.img --mkimage recover.scr rootfs-1.2.0.aduimg
   aduflash script --config board.toml --raw --bank B -o recover.txt rootfs=rootfs.ext4 kernel=Image`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "device config `FILE` ([slots], [uboot], [bootloader])", Value: cliapp.DefaultDeviceConfig, TakesFile: true},
			&cli.StringSliceFlag{Name: "pub", Usage: "trusted public key `PEM` file (repeatable)", TakesFile: true},
			&cli.StringFlag{Name: "keyring", Usage: "keyring `FILE` (TOML: trusted keys and revoked key ids)", TakesFile: true},
			&cli.BoolFlag{Name: "raw", Usage: "take the IMAGEs as they are, without signature checks"},
			&cli.StringFlag{Name: "bank", Usage: "the `BANK` written and made primary (default: the first bank)"},
			&cli.StringFlag{Name: "gpt", Usage: "the disk image or block device whose GPT places the GPT slots", TakesFile: true},
			&cli.StringFlag{Name: "check", Value: string(ubootscript.CheckSHA256), Usage: "how U-Boot checks images: sha256 or crc32 (faster; catches corruption, not forgery)"},
			&cli.BoolFlag{Name: "keep-env", Usage: "leave the board's environment as it is (no fresh env, no bank made primary)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the commands to `FILE` ('-' = stdout)", TakesFile: true},
			&cli.StringFlag{Name: "mkimage", Usage: "write the U-Boot script image to `FILE`", TakesFile: true},
			&cli.StringFlag{Name: "name", Value: "aduflash recovery", Usage: "the script image's `NAME` (mkimage -n, at most 32 bytes)"},
			&cli.StringFlag{Name: "arch", Value: "arm", Usage: "the script image's architecture (mkimage -A): arm, arm64, riscv, ..."},
		},
		Action: e.script,
	}
}

func (e *env) script(c *cli.Context) error {
	if err := cliapp.Args(c, 1, -1, "[CLASS=]IMAGE..."); err != nil {
		return err
	}
	raw, pubs, keyring := c.Bool("raw"), c.StringSlice("pub"), c.String("keyring")
	if raw == (len(pubs) > 0 || keyring != "") {
		return exitcode.Usagef("%s: give --pub or --keyring to verify the images, or --raw to take them as they are", c.Command.HelpName)
	}
	board, err := loadBoard(c)
	if err != nil {
		return err
	}
	var kr *image.Keyring
	if !raw {
		if kr, err = image.LoadTrust(keyring, pubs); err != nil {
			return err
		}
	}
	bank := c.String("bank")
	if bank == "" && len(board.Slots.Banks) > 0 {
		bank = board.Slots.Banks[0]
	}
	var writes []ubootscript.Write
	for _, arg := range c.Args().Slice() {
		w, err := scriptWrite(board.Slots, bank, arg, kr)
		if err != nil {
			return err
		}
		writes = append(writes, w)
	}
	s, err := ubootscript.Generate(board, writes, ubootscript.Options{Bank: bank, Check: ubootscript.Check(c.String("check")), KeepEnv: c.Bool("keep-env")})
	if err != nil {
		return err
	}
	if err := e.writeScript(c, s); err != nil {
		return err
	}
	e.summary(board.Slots, bank, writes, s)
	return nil
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

// scriptWrite verifies the image of arg ([CLASS=]FILE) and returns what the board receives,
// going to bank's slot of its class.
func scriptWrite(cfg *slots.Config, bank, arg string, kr *image.Keyring) (ubootscript.Write, error) {
	class, path, named := strings.Cut(arg, "=")
	if !named {
		path, class = arg, ""
	}
	f, size, err := infile.OpenSized(path)
	if err != nil {
		return ubootscript.Write{}, err
	}
	defer f.Close()
	name := filepath.Base(path)
	var (
		img      ubootscript.Image
		imgClass string
	)
	prefix := make([]byte, install.SniffSize)
	n, _ := f.ReadAt(prefix, 0)
	switch format := install.Sniff(prefix[:n]); {
	case kr == nil:
		img, err = ubootscript.ImageOf(name, io.NewSectionReader(f, 0, size))
	case format == install.FormatAduimg:
		var r *image.Reader
		if r, err = image.NewReader(io.NewSectionReader(f, 0, size), image.VerifyOptions{Keyring: kr}); err == nil {
			imgClass = r.Header().SlotClass
			img, err = ubootscript.ImageOf(name, r)
		}
	case format == install.FormatMCUboot:
		var r *mcuboot.Reader
		if r, err = mcuboot.NewReader(io.NewSectionReader(f, 0, size), size, kr, nil); err == nil {
			img, err = ubootscript.ImageOf(name, r)
		}
	default:
		return ubootscript.Write{}, exitcode.InvalidInput(fmt.Errorf("%s: neither an aduimg nor an MCUboot image (--raw takes any file)", path))
	}
	if err != nil {
		return ubootscript.Write{}, fmt.Errorf("%s: %w", path, err)
	}
	slot, err := slotOf(cfg, bank, class, imgClass, path)
	if err != nil {
		return ubootscript.Write{}, err
	}
	return ubootscript.Write{Slot: slot, Image: img}, nil
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

// writeScript writes the text (-o, or stdout) and the script image (--mkimage).
func (e *env) writeScript(c *cli.Context, s *ubootscript.Script) error {
	if out := c.String("mkimage"); out != "" {
		t := time.Now()
		if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return exitcode.Usagef("SOURCE_DATE_EPOCH=%q is not a number of seconds", v)
			}
			t = time.Unix(sec, 0)
		}
		b, err := s.Image(ubootscript.ImageOptions{Name: c.String("name"), Arch: c.String("arch"), Time: t})
		if err != nil {
			return err
		}
		if err := outfile.WriteFile(out, b, 0o644); err != nil {
			return err
		}
	}
	out := c.String("output")
	if out == "" && c.String("mkimage") != "" {
		return nil
	}
	if out == "" || out == "-" {
		_, err := io.WriteString(e.stdout, s.Text())
		return err
	}
	return outfile.WriteFile(out, []byte(s.Text()), 0o644)
}

// summary tells on stderr what the script does, and which classes of the bank it leaves
// alone.
func (e *env) summary(cfg *slots.Config, bank string, writes []ubootscript.Write, s *ubootscript.Script) {
	var written []string
	for _, w := range writes {
		fmt.Fprintf(e.stderr, "%s -> %s: %d bytes, sha256 %x\n", w.Image.Name, w.Slot, w.Image.Size, w.Image.SHA256)
		if sc, err := cfg.Slot(w.Slot); err == nil {
			written = append(written, sc.Class)
		}
	}
	for _, class := range cfg.BankedClasses() {
		if !slices.Contains(written, class) {
			fmt.Fprintf(e.stderr, "note: bank %s's %s slot is not written (no image of class %s)\n", bank, class, class)
		}
	}
	if s.Bank != "" {
		fmt.Fprintf(e.stderr, "then: U-Boot's default environment with bank %s primary, saved to both copies; reset\n", s.Bank)
	}
}
