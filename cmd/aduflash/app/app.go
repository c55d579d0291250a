// Package app is aduflash's command line: writing images into slots, devices and files on a
// workstation or in a device shell. main only calls Run; everything else lives here so that
// tests drive the same code the binary runs.
package app

import (
	"context"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
)

// env is what every command may use besides its flags and arguments.
type env struct {
	stdout, stderr io.Writer
	// tamper, when set, changes the bytes aduflash recover's TFTP server sends, after they
	// were verified (tftpserve.Server.Tamper): the tests' damaged transfer. Nil in the binary.
	tamper func(name string, r io.Reader) io.Reader
}

// New builds the aduflash command tree writing to stdout and stderr.
func New(stdout, stderr io.Writer) *cli.App {
	return newApp(&env{stdout: stdout, stderr: stderr})
}

func newApp(e *env) *cli.App {
	return cliapp.New(&cli.App{
		Name:  "aduflash",
		Usage: "write update images to slots, devices and disk or flash images (workstation / device shell); recover boards through U-Boot's console; update MCUs over mcumgr/SMP",
		Description: `Exit codes: 0 ok, 1 invalid input or failed verification (bad image or signature, image
too large, target in the running bank), 2 usage error, 3 I/O or environment error.

EXAMPLE:
   aduflash write --pub release.pub.pem rootfs-1.2.0.aduimg disk.img
   aduflash write --config ` + cliapp.DefaultDeviceConfig + ` --keyring /etc/aduflash/keyring.toml rootfs-1.2.0.aduimg rootfs-b
   aduflash write --raw sdcard.img /dev/sdb
   aduflash serve --pub release.pub.pem ./recovery
   aduflash recover --config board.toml --pub release.pub.pem --console /dev/ttyUSB0 --ipaddr 192.168.50.2 \
       --listen 192.168.50.1:69 --expose-to-network rootfs-1.2.0.aduimg
   aduflash mcu upload --port /dev/ttyACM0 --pub mcu.pub.pem app-1.2.0.signed.bin`,
		Commands: []*cli.Command{
			e.writeCommand(),
			e.envCommand(),
			e.manifestCommand(),
			e.fastbootCommand(),
			e.scriptCommand(),
			e.serveCommand(),
			e.recoverCommand(),
			e.mcuCommand(),
		},
	}, e.stdout, e.stderr)
}

// Run runs aduflash with args (args[0] is the program name) and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cliapp.Run(ctx, New(stdout, stderr), args, stderr)
}
