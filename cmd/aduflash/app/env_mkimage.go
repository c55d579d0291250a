package app

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/internal/cnum"
)

func (e *env) envMkimageCommand() *cli.Command {
	return &cli.Command{
		Name:      "mkimage",
		Usage:     "build an environment image from name=value lines, byte for byte like mkenvimage",
		ArgsUsage: "[INPUT]",
		Description: `INPUT (or stdin when missing or '-') holds the variables as name=value lines, as mkenvimage
reads them: empty lines are skipped, a line starting with '#' is a comment, a line ending in
a backslash continues the value on the next line (the newline is kept). Lines are copied as
they are, in input order (not sorted, not checked). The image is SIZE bytes: CRC-32, the
flags byte 0x01 with -r, the variables, two NULs, then padding (0xff unless -p). The output
is identical to mkenvimage's for the same arguments. SIZE and BYTE are C integers (0x hex,
leading 0 octal, decimal).

Exit codes: 0 written; 1 the variables do not fit into SIZE; 2 usage error; 3 I/O error.

EXAMPLE:
   aduflash env mkimage -s 0x4000 -o uboot.env env.txt
   aduflash env mkimage -s 0x20000 -r -b -p 0 -o env-redund.bin env.txt
   printf 'bootcmd=run distro_bootcmd\n' | aduflash env mkimage -s 0x2000 -o - > env.bin`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "size", Aliases: []string{"s"}, Usage: "image `SIZE` in bytes (the env partition size)"},
			&cli.BoolFlag{Name: "redundant", Aliases: []string{"r"}, Usage: "redundant layout (flags byte after the CRC)"},
			&cli.BoolFlag{Name: "big-endian", Aliases: []string{"b"}, Usage: "store the CRC big-endian"},
			&cli.StringFlag{Name: "pad", Aliases: []string{"p"}, Value: "0xff", Usage: "padding `BYTE`"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FILE` ('-' = stdout)", TakesFile: true},
		},
		Action: e.envMkimage,
	}
}

// errEnvTooLarge is mkenvimage's "too large for the target environment storage".
var errEnvTooLarge = errors.New("the environment file is too large for the target environment storage")

// mkenvimage builds an image exactly as U-Boot's tools/mkenvimage.c does.
func mkenvimage(input []byte, size int, redundant, bigEndian bool, pad byte) ([]byte, error) {
	hdr := 4
	if redundant {
		hdr = 5
	}
	if size <= hdr+1 {
		return nil, fmt.Errorf("size %d leaves no room for the environment", size)
	}
	out := make([]byte, size)
	envp := out[hdr:]
	envsize := len(envp)
	for i := range envp {
		envp[i] = pad
	}
	fp, ep, n := 0, 0, len(input)
	for ; fp < n && ep < envsize-1; fp++ {
		switch {
		case input[fp] == '\n':
			switch {
			case fp == 0 || input[fp-1] == '\n':
				// empty line
			case input[fp-1] == '\\':
				ep--
				envp[ep] = '\n'
				ep++
			default:
				envp[ep] = 0
				ep++
			}
		case (fp == 0 || input[fp-1] == '\n') && input[fp] == '#':
			for fp+1 < n && input[fp+1] != '\n' {
				fp++
			}
			fp++
		default:
			envp[ep] = input[fp]
			ep++
		}
	}
	// Whatever is left must be empty lines and comments.
	for ; fp < n; fp++ {
		switch {
		case input[fp] == '\n':
			// mkenvimage accepts any newline here (only non-newline bytes count)
		case (fp == 0 || input[fp-1] == '\n') && input[fp] == '#':
			for fp+1 < n && input[fp+1] != '\n' {
				fp++
			}
			fp++
		default:
			return nil, errEnvTooLarge
		}
	}
	switch {
	case ep == 0:
		// Empty input: mkenvimage reads the byte before the env (0 in practice) and stores
		// one NUL.
		envp[0] = 0
	case envp[ep-1] != 0:
		envp[ep] = 0
		ep++
		if ep >= envsize {
			return nil, errEnvTooLarge
		}
		envp[ep] = 0
	default:
		envp[ep] = 0
	}
	crc := crc32.ChecksumIEEE(envp)
	if bigEndian {
		binary.BigEndian.PutUint32(out, crc)
	} else {
		binary.LittleEndian.PutUint32(out, crc)
	}
	if redundant {
		out[4] = 1
	}
	return out, nil
}

func (e *env) envMkimage(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 1, "[INPUT]"); err != nil {
		return err
	}
	if err := cliapp.Need(c, "size", "output"); err != nil {
		return err
	}
	size, err := cnum.ParseInt(c.String("size"))
	if err != nil || size <= 0 || size > 64<<20 {
		return exitcode.Usagef("%s: -s: bad size %q (1..64 MiB)", c.Command.HelpName, c.String("size"))
	}
	pad, err := cnum.ParseInt(c.String("pad"))
	if err != nil || pad < 0 || pad > 255 {
		return exitcode.Usagef("%s: -p: bad byte %q (0..255)", c.Command.HelpName, c.String("pad"))
	}
	var input []byte
	if in := c.Args().First(); in == "" || in == "-" {
		input, err = io.ReadAll(os.Stdin)
	} else {
		input, err = os.ReadFile(in)
	}
	if err != nil {
		return err
	}
	img, err := mkenvimage(input, int(size), c.Bool("redundant"), c.Bool("big-endian"), byte(pad))
	if err != nil {
		return exitcode.InvalidInput(err)
	}
	if out := c.String("output"); out != "-" {
		return outfile.WriteFile(out, img, 0o644)
	}
	_, err = e.stdout.Write(img)
	return err
}
