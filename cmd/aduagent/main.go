// Command aduagent is the device side of the toolkit: it shows the slot and bootloader state
// of the device and marks banks good or bad by hand. See `aduagent --help`.
//
// It ships to devices, so it must not import the host tools' packages (manifestgen, hub,
// recovery, the CLI progress bars); app's TestImportGraph checks that.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/aduflash/aduflash/cmd/aduagent/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := app.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
