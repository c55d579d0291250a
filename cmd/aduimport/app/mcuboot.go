package app

import "github.com/urfave/cli/v2"

// mcubootCommand: owned by the image/mcuboot work (placeholder until it lands).
func (e *env) mcubootCommand() *cli.Command {
	return &cli.Command{
		Name:        "mcuboot",
		Usage:       "sign, verify and dump MCUboot images (imgtool-compatible)",
		Description: "EXAMPLE:\n   aduimport mcuboot sign -k k.pem --version 1.2.3+4 -H 0x200 --pad-header -S 0x40000 --align 4 app.bin app.signed.bin",
		Subcommands: []*cli.Command{},
	}
}
