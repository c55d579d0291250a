package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/tftptest"
	"github.com/aduflash/aduflash/internal/ubootqemu"
	"github.com/aduflash/aduflash/recovery/console"
)

// BenchmarkRecoverOverhead: a whole recovery of a 64 MiB root file system (TFTP, crc32 in
// U-Boot, mmc write, fresh env, reset, boot seen) through aduflash recover, against the same
// commands typed straight into U-Boot by a plain script (Ctrl-C until the prompt, then each
// line and a wait for the next prompt, no echo check, no markers, no classification). The
// two alternate on a freshly started board each time; the medians are reported, with the
// overhead of the console path in percent (target ≤ 10). scripts/bench-recover runs it.
func BenchmarkRecoverOverhead(b *testing.B) {
	size := 64 << 20
	if s := os.Getenv("BENCH_RECOVER_MIB"); s != "" {
		fmt.Sscan(s, &size)
		size <<= 20
	}
	ub := ubootqemu.RequireNet(b)
	dir := b.TempDir()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i*7 + i>>13)
	}
	tftpDir := filepath.Join(dir, "tftp")
	os.MkdirAll(tftpDir, 0o755)
	if err := os.WriteFile(filepath.Join(tftpDir, "rootfs.img"), payload, 0o644); err != nil {
		b.Fatal(err)
	}
	srv := tftptest.Start(b, tftpDir, nil)
	scriptText := recoveryScript(payload, slotA/512)
	script := filepath.Join(dir, "recover.txt")
	os.WriteFile(script, []byte(scriptText), 0o644)
	disk := filepath.Join(dir, "sd.img")
	diskSize := int64(ubootqemu.DefaultDiskSize)
	for diskSize < int64(slotA+size+(1<<20)) {
		diskSize *= 2
	}
	const up = "booting bank A"

	var viaConsole, typed []time.Duration
	for i := 0; i < b.N; i++ {
		for _, path := range []string{"console", "typed"} {
			board := startBricked(b, ub, disk, diskSize)
			start := time.Now()
			var err error
			if path == "console" {
				var out, errOut bytes.Buffer
				code := Run(context.Background(), []string{"aduflash", "recover", "--console", board.PTY, "--ipaddr", "10.0.2.15",
					"--serverip", "10.0.2.2", "--tftp-port", fmt.Sprint(srv.Port), "--script", script, "--up", up,
					"--log", filepath.Join(dir, "console.log")}, &out, &errOut)
				if code != 0 {
					err = fmt.Errorf("exit %d: %s", code, errOut.String())
				}
			} else {
				err = typeStraight(board.PTY, srv.Port, scriptText, up)
			}
			took := time.Since(start)
			board.Close()
			if err != nil {
				b.Fatalf("%s: %v", path, err)
			}
			got, _ := os.ReadFile(disk)
			if !bytes.Equal(got[slotA:slotA+size], payload) {
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

// startBricked writes a bricked card (env copies erased, slots garbage) and boots it.
func startBricked(b *testing.B, ub, disk string, size int64) *ubootqemu.Session {
	if err := ubootqemu.CreateDisk(disk, size); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	erased := bytes.Repeat([]byte{0xff}, ubootqemu.EnvSize)
	f.WriteAt(erased, ubootqemu.EnvOffset)
	f.WriteAt(erased, ubootqemu.EnvOffsetRedund)
	f.WriteAt(bytes.Repeat([]byte{0x5a}, 1<<20), slotA)
	f.Close()
	board, err := ubootqemu.Start(context.Background(), ubootqemu.Config{UBoot: ub, Disk: disk, Network: true, ConsolePTY: true})
	if err != nil {
		b.Fatal(err)
	}
	return board
}

// typeStraight is the baseline: the recovery's commands typed into U-Boot as a plain expect
// script would, each followed by a wait for the next prompt.
func typeStraight(pty string, port int, scriptText, up string) error {
	steps, err := console.ParseScript(strings.NewReader(scriptText))
	if err != nil {
		return err
	}
	all, err := console.Plan{Network: console.Network{IPAddr: "10.0.2.15", ServerIP: "10.0.2.2", Port: port}, Steps: steps}.Script()
	if err != nil {
		return err
	}
	f, err := console.Open(pty, 115200)
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
	if !t.waitFor(up, 5*time.Minute) {
		return errors.New("the board did not come up")
	}
	return nil
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
