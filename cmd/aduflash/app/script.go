package app

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/recovery/ubootscript"
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
		Flags: append(recoveryFlags(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the commands to `FILE` ('-' = stdout)", TakesFile: true},
			&cli.StringFlag{Name: "mkimage", Usage: "write the U-Boot script image to `FILE`", TakesFile: true},
			&cli.StringFlag{Name: "name", Value: "aduflash recovery", Usage: "the script image's `NAME` (mkimage -n, at most 32 bytes)"},
			&cli.StringFlag{Name: "arch", Value: "arm", Usage: "the script image's architecture (mkimage -A): arm, arm64, riscv, ..."},
		),
		Action: e.script,
	}
}

func (e *env) script(c *cli.Context) error {
	if err := cliapp.Args(c, 1, -1, "[CLASS=]IMAGE..."); err != nil {
		return err
	}
	r, err := e.newRecovery(c)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := e.writeScript(c, r.script); err != nil {
		return err
	}
	e.summary(r)
	return nil
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
func (e *env) summary(r *recovery) {
	cfg, bank, s := r.slots, r.bank, r.script
	var written []string
	for _, w := range r.writes {
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
