package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/gptdisk"
	"github.com/aduflash/aduflash/recovery/console"
	"github.com/aduflash/aduflash/recovery/tftpserve"
	"github.com/aduflash/aduflash/recovery/ubootscript"
	"github.com/aduflash/aduflash/slots"
)

// BenchmarkRecoverOverhead: a whole recovery of a 64 MiB root file system (the aduimg
// verified, TFTP, sha256 in U-Boot, mmc write, read back, fresh env, reset, boot seen) through
// aduflash recover, against the same generated commands typed straight into U-Boot by a plain
// script (Ctrl-C until the prompt, then each line and a wait for the next prompt, no echo
// check, no markers, no classification) with the same image verified into the same TFTP
// server's catalog first. The two alternate on a freshly started board each time; the
// medians are reported, with the overhead of the console path in percent (target ≤ 10).
// scripts/bench-recover runs it.
func BenchmarkRecoverOverhead(b *testing.B) {
	size := 64 << 20
	if s := os.Getenv("BENCH_RECOVER_MIB"); s != "" {
		fmt.Sscan(s, &size)
		size <<= 20
	}
	diskSize := int64(16 << 20)
	for slotSize(diskSize) < int64(size) {
		diskSize *= 2
	}
	board := newBrickedBoard(b, size, diskSize)
	var viaConsole, typed []time.Duration
	for i := 0; i < b.N; i++ {
		for _, path := range []string{"console", "typed"} {
			board.boot(b)
			start := time.Now()
			var err error
			if path == "console" {
				if code, _, errOut, _ := board.recover(b, nil); code != 0 {
					err = fmt.Errorf("exit %d: %s", code, errOut)
				}
			} else {
				err = board.typeStraight()
			}
			took := time.Since(start)
			board.stop()
			if err != nil {
				b.Fatalf("%s: %v", path, err)
			}
			got, _ := os.ReadFile(board.disk)
			if !bytes.Equal(got[slotA:slotA+size], board.payload) {
				b.Fatalf("%s: slot A does not hold the payload", path)
			}
			if path == "console" {
				viaConsole = append(viaConsole, took)
			} else {
				typed = append(typed, took)
			}
		}
	}
	mc, mt := median(viaConsole), median(typed)
	b.ReportMetric(mc.Seconds(), "console-s")
	b.ReportMetric(mt.Seconds(), "typed-s")
	b.ReportMetric(100*(mc.Seconds()-mt.Seconds())/mt.Seconds(), "overhead-%")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// typeStraight is the baseline: the image verified into a catalog, served, and the
// generator's commands typed into U-Boot as a plain expect script would, each followed by a
// wait for the next prompt.
func (b *brickedBoard) typeStraight() error {
	cat, steps, err := b.generate()
	if err != nil {
		return err
	}
	defer cat.Close()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&tftpserve.Server{Catalog: cat}).Serve(ctx, conn) }()
	defer func() { cancel(); <-done }()
	all, err := console.Plan{Network: console.Network{IPAddr: "10.0.2.15", ServerIP: "10.0.2.2", Port: conn.LocalAddr().(*net.UDPAddr).Port}, Steps: steps}.Script()
	if err != nil {
		return err
	}
	f, err := console.Open(b.console, 115200)
	if err != nil {
		return err
	}
	defer f.Close()
	t := &typist{f: f, in: make(chan []byte, 1024)}
	go t.read()
	for !t.waitFor("=> ", 100*time.Millisecond) {
		f.Write([]byte{3})
	}
	f.Write([]byte("echo ready\"\"now\r")) // prints readynow: past the answers to the Ctrl-Cs
	if !t.waitFor("\nreadynow", 10*time.Second) || !t.waitFor("=> ", 10*time.Second) {
		return errors.New("no answer at the prompt")
	}
	for _, s := range all {
		for _, c := range s.Commands {
			f.Write([]byte(c.Line + "\r"))
			if !t.waitFor("\n=> ", 5*time.Minute) {
				return fmt.Errorf("no prompt after %q", c.Line)
			}
		}
	}
	f.Write([]byte("reset\r"))
	if !t.waitFor(bootedBankA, 5*time.Minute) {
		return errors.New("the board did not come up")
	}
	return nil
}

// generate verifies the image into a catalog and generates the steps from the board's
// config, as aduflash recover does.
func (b *brickedBoard) generate() (*tftpserve.Catalog, []console.Step, error) {
	kr, err := image.LoadTrust("", []string{b.pub})
	if err != nil {
		return nil, nil, err
	}
	cat, err := tftpserve.OpenFiles(context.Background(), []string{b.image}, tftpserve.Options{Keyring: kr})
	if err != nil {
		return nil, nil, err
	}
	f := cat.Files()[0]
	board, err := b.ubootBoard()
	if err == nil {
		var s *ubootscript.Script
		img := ubootscript.Image{Name: f.Name, Size: f.Size, CRC32: uint32(f.CRC32), SHA256: f.SHA256}
		if s, err = ubootscript.Generate(board, []ubootscript.Write{{Slot: "rootfs-a", Image: img}}, ubootscript.Options{}); err == nil {
			return cat, s.ConsoleSteps(), nil
		}
	}
	cat.Close()
	return nil, nil, err
}

func (b *brickedBoard) ubootBoard() (ubootscript.Board, error) {
	var board ubootscript.Board
	var err error
	if board.Slots, err = slots.ParseConfig([]byte(boardTOML)); err != nil {
		return board, err
	}
	if board.UBoot, err = ubootscript.ParseConfig([]byte(boardTOML)); err != nil {
		return board, err
	}
	bc, err := bootloader.ParseConfig([]byte(boardTOML))
	if err != nil {
		return board, err
	}
	board.Env = &bc
	disk, err := os.Open(b.disk)
	if err != nil {
		return board, err
	}
	defer disk.Close()
	board.GPT, err = gptdisk.Read(disk)
	return board, err
}

type typist struct {
	f   io.Writer
	in  chan []byte
	buf []byte
}

func (t *typist) read() {
	r := t.f.(io.Reader)
	for {
		b := make([]byte, 4096)
		n, err := r.Read(b)
		if n > 0 {
			t.in <- b[:n]
		}
		if err != nil {
			close(t.in)
			return
		}
	}
}

// waitFor reads until s arrived (true) or timeout passed; what follows s stays buffered.
func (t *typist) waitFor(s string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		if i := bytes.Index(t.buf, []byte(s)); i >= 0 {
			t.buf = t.buf[i+len(s):]
			return true
		}
		select {
		case b, ok := <-t.in:
			if !ok {
				return false
			}
			t.buf = append(t.buf, b...)
		case <-deadline:
			return false
		}
	}
}
