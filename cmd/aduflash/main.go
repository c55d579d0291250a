// Command aduflash writes images to devices, disks and flash images on a workstation or in a
// device shell: aduimg images verified while they stream, MCUboot images verified before they
// are written, raw images on request. See `aduflash --help`.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/aduflash/aduflash/cmd/aduflash/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := app.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
