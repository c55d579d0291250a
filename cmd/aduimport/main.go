// Command aduimport signs update images (aduimg and MCUboot) and writes ADU import manifests
// on a build host or in CI. See `aduimport --help`.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/aduflash/aduflash/cmd/aduimport/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := app.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
