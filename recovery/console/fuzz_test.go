package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Lines U-Boot prints, as the table of ParseLine's cases; the seed corpus holds the same
// and whole transcripts of the real U-Boot under QEMU.
func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		line string
		want Line
	}{
		{"Loading: #################################################################", Line{Kind: Progress, Marks: 65}},
		{"\t ##########", Line{Kind: Progress, Marks: 10}},
		{"Loading: T T T T T T T T T T ", Line{Kind: Progress}},
		{"Loading: ", Line{Kind: Progress}},
		{"Bytes transferred = 3145728 (300000 hex)", Line{Kind: Transferred, Bytes: 3145728}},
		{"Bytes transferred = 99999999999999999999999 (x hex)", Line{Kind: Failure, Err: ErrTransfer}},
		{"TFTP error: 'File not found' (1)", Line{Kind: Failure, Err: ErrTransfer}},
		{"TFTP error: trying to overwrite reserved memory...", Line{Kind: Failure, Err: ErrTransfer}},
		{"Retry count exceeded; starting again", Line{Kind: Failure, Err: ErrTransfer}},
		{"ARP Retry count exceeded; starting again", Line{Kind: Failure, Err: ErrTransfer}},
		{"*** ERROR: `serverip' not set", Line{Kind: Failure, Err: ErrTransfer}},
		{"crc32 for 40200000 ... 404fffff ==> 1c291ca3 != 12345678 ** ERROR **", Line{Kind: Failure, Err: ErrCheck}},
		{"Unknown command 'ubi' - try 'help'", Line{Kind: Failure, Err: ErrUnknownCommand}},
		{"Bad Magic Number", Line{Kind: Failure, Err: ErrBadImage}},
		{"   Verifying Checksum ... Bad Data CRC", Line{Kind: Failure, Err: ErrBadImage}},
		{"## Error: \"fdt_addr_r\" not defined", Line{Kind: Failure, Err: ErrCommand}},
		{"0 blocks written: ERROR", Line{Kind: Failure, Err: ErrCommand}},
		{"Writing to MMC(0)... FAILED!", Line{Kind: Failure, Err: ErrCommand}},
		{"Size of write exceeds partition or device limit", Line{Kind: Failure, Err: ErrBadBlocks}},
		{"aduflash: FAILED: check rootfs-a: rootfs.img differs from what the workstation serves (sha256); nothing written", Line{Kind: StepFailed}},
		{"aduflash: ok: check rootfs-a", Line{}},
		{"Skipping bad block 0x00220000", Line{}},
		{"crc32 for 40200000 ... 404fffff ==> 1c291ca3", Line{}},
		{"MMC write: dev # 0, block # 4096, count 16 ... 16 blocks written: OK", Line{}},
		{"## Booting kernel from Legacy Image at 40400000 ...", Line{}},
		{"*** Warning - bad CRC, using default environment", Line{}},
		{"##", Line{Kind: Progress, Marks: 2}},
		{"", Line{}},
	} {
		if got := ParseLine(c.line); got != c.want {
			t.Errorf("ParseLine(%q) = %+v, want %+v", c.line, got, c.want)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add("Loading: ####")
	f.Fuzz(func(t *testing.T, s string) {
		l := ParseLine(s)
		switch l.Kind {
		case Failure:
			if l.Err == nil {
				t.Fatalf("ParseLine(%q): a failure without an error", s)
			}
		case Progress:
			if l.Marks < 0 || l.Marks > strings.Count(s, "#") {
				t.Fatalf("ParseLine(%q): %d marks", s, l.Marks)
			}
		case Transferred:
			if l.Bytes < 0 {
				t.Fatalf("ParseLine(%q): %d bytes", s, l.Bytes)
			}
		}
		if l.Kind != Failure && l.Err != nil {
			t.Fatalf("ParseLine(%q) = %+v: an error on a line that is no failure", s, l)
		}
	})
}

// scriptedPort plays out as a board would answer: text typed comes back up to its echo, and
// Enter or Ctrl-C releases the output up to the next prompt. Once out is spent, reads end.
type scriptedPort struct {
	mu     sync.Mutex
	out    []byte
	pieces chan []byte
	ended  bool
}

func newScripted(out []byte) *scriptedPort {
	return &scriptedPort{out: out, pieces: make(chan []byte, 4096)}
}

func (p *scriptedPort) Read(b []byte) (int, error) {
	piece, ok := <-p.pieces
	if !ok {
		return 0, io.EOF
	}
	return copy(b, piece), nil // pieces are short enough in the corpus; the rest is dropped
}

func (p *scriptedPort) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return len(b), nil
	}
	n := -1
	if bytes.ContainsAny(b, "\r\x03") {
		if i := bytes.Index(p.out, []byte("=> ")); i >= 0 {
			n = i + 3
		}
	} else if i := bytes.Index(p.out, b); i >= 0 {
		n = i + len(b)
	}
	if n < 0 {
		p.ended = true
		close(p.pieces)
		return len(b), nil
	}
	p.pieces <- p.out[:n]
	p.out = p.out[n:]
	return len(b), nil
}

// FuzzConsole: whatever a board prints, Attach and RunStep end (with an error or not),
// without a panic, and a step reported as passed saw its own marker.
func FuzzConsole(f *testing.F) {
	f.Add([]byte("=> "))
	f.Fuzz(func(t *testing.T, out []byte) {
		opts := Options{PromptTimeout: 50 * time.Millisecond, ProbeInterval: 5 * time.Millisecond, EchoTimeout: 20 * time.Millisecond, CommandTimeout: 20 * time.Millisecond}
		c := New(newScripted(out), "fuzz", opts)
		defer c.Close()
		c.token = "0" // the corpus may then hold markers that match
		ctx := context.Background()
		if err := c.Attach(ctx); err != nil {
			return
		}
		m := &meterLog{}
		err := c.RunStep(ctx, Step{Name: "s", Image: "x", Size: 10, Commands: []Command{{Line: "tftpboot x", Expect: []string{"ok"}}}}, m)
		if err == nil && m.sum != 10 {
			t.Fatalf("a step passed with %d bytes counted, want 10", m.sum)
		}
	})
}

// The corpus transcripts do what their names say, so the fuzzer starts from real paths.
func TestConsoleTranscripts(t *testing.T) {
	for name, want := range map[string]error{"good-step": nil, "tftp-error": ErrTransfer, "wrong-size": ErrCheck, "step-failed": ErrCommand} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzConsole", name))
		if err != nil {
			t.Fatal(err)
		}
		q := strings.TrimSuffix(strings.SplitN(string(b), "\n", 2)[1], "\n")
		out, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(q, "[]byte("), ")"))
		if err != nil {
			t.Fatal(err)
		}
		c := New(newScripted([]byte(out)), "transcript", Options{PromptTimeout: time.Second, ProbeInterval: 5 * time.Millisecond, EchoTimeout: 100 * time.Millisecond, CommandTimeout: 100 * time.Millisecond})
		c.token = "0"
		if err := c.Attach(context.Background()); err != nil {
			t.Fatalf("%s: Attach: %v", name, err)
		}
		err = c.RunStep(context.Background(), Step{Name: "s", Image: "x", Size: 10, Commands: []Command{{Line: "tftpboot x", Expect: []string{"ok"}}}}, &meterLog{})
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("%s: RunStep = %v, want %v", name, err, want)
		}
		c.Close()
	}
}
