// Command aduagent is the device's update agent: the daemon that follows Azure Device Update
// through IoT Hub (run), manual installs (install), the slot and bootloader state (status)
// and marking banks good or bad by hand. See `aduagent --help`.
//
// It ships to devices, so it must not import the host tools' packages (manifestgen, hub,
// recovery, the CLI progress bars); app's TestImportGraph checks that.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/aduflash/aduflash/cmd/aduagent/app"
)

// defaultMemoryLimit is the Go runtime's soft memory limit unless GOMEMLIMIT says otherwise:
// the agent's live heap is about 10 MiB during an install whatever the image size (the
// download's read-ahead, three 1 MiB chunks on their way to the slot, the writer's units,
// then the read-back's chunks), and the limit makes the runtime return freed pages instead
// of letting the heap goal drift up during a long install. Close to the live heap it makes
// the collector run all the time instead: 12 MiB cost a 1 GiB install 500 collections.
const defaultMemoryLimit = 24 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
