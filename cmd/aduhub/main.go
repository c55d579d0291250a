// Command aduhub is a local stand-in for Azure IoT Hub and Device Update: it registers
// devices, imports and signs updates, serves their files, deploys them and follows the
// devices' reports; `aduhub demo` shows the whole update loop on one machine. See
// `aduhub --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/aduflash/aduflash/cmd/aduhub/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
