// Command mcusim runs a simulated MCU (devicesim/mcusim) on a pseudo-terminal for the
// benchmark scripts: mcusim [-baud N] [-max-line N] [-slot-size N] [-primary IMAGE]. It prints
// "PTY /dev/pts/N" and serves until SIGINT or SIGTERM, then prints its counters.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/aduflash/aduflash/devicesim/mcusim"
)

func main() {
	baud := flag.Int("baud", 115200, "pace the line like a UART at this rate (0: no pacing)")
	maxLine := flag.Int("max-line", mcusim.DefaultMaxLine, "input line buffer in bytes (-1: no limit)")
	slotSize := flag.Int64("slot-size", mcusim.DefaultSlotSize, "slot size in bytes")
	bufSize := flag.Int("buf-size", mcusim.DefaultBufSize, "the buf_size mcumgr params reports")
	primary := flag.String("primary", "", "MCUboot image in the primary slot")
	flag.Parse()
	if err := run(*baud, *maxLine, *bufSize, *slotSize, *primary); err != nil {
		fmt.Fprintln(os.Stderr, "mcusim:", err)
		os.Exit(3)
	}
}

func run(baud, maxLine, bufSize int, slotSize int64, primary string) error {
	cfg := mcusim.Config{Baud: baud, MaxLine: maxLine, SlotSize: slotSize, BufSize: bufSize}
	if primary != "" {
		b, err := os.ReadFile(primary)
		if err != nil {
			return err
		}
		cfg.Primary = b
	}
	m, err := mcusim.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	path, done, err := m.ServePTY(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("PTY %s\n", path)
	<-done
	st := m.Stats()
	fmt.Printf("requests %d, data %d, resent %d\n", st.Requests, st.Data, st.Resent)
	return nil
}
