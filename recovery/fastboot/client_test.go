package fastboot_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/recovery/fastboot"
	"github.com/aduflash/aduflash/recovery/fastboot/fastbootsim"
)

// fast are options for a device on the loopback: a lost packet is sent again soon.
var fast = fastboot.Options{Timeout: 50 * time.Millisecond, Attempts: 40, ConnectAttempts: 40}

func startSim(t *testing.T, cfg fastbootsim.Config) *fastbootsim.Device {
	t.Helper()
	if cfg.Partitions == nil {
		cfg.Partitions = map[string]int{"rootfs_a": 1 << 20, "small": 64 << 10}
	}
	d, err := fastbootsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func dial(t *testing.T, addr string, opts fastboot.Options) *fastboot.Client {
	t.Helper()
	c, err := fastboot.Dial(context.Background(), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func payload(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{7}).Read(b)
	return b
}

func TestAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.2":       "10.0.0.2:5554",
		"10.0.0.2:15554": "10.0.0.2:15554",
		"board":          "board:5554",
		"::1":            "[::1]:5554",
		"[::1]":          "[::1]:5554",
		"[::1]:7":        "[::1]:7",
	} {
		if got := fastboot.Addr(in); got != want {
			t.Errorf("Addr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGetVar(t *testing.T) {
	d := startSim(t, fastbootsim.Config{Vars: map[string]string{"product": "qemu"}})
	c := dial(t, d.Addr(), fast)
	ctx := context.Background()
	if v, err := c.GetVar(ctx, "version"); err != nil || v != "0.4" {
		t.Fatalf("getvar version = %q, %v; want 0.4", v, err)
	}
	if v, err := c.GetVar(ctx, "product"); err != nil || v != "qemu" {
		t.Fatalf("getvar product = %q, %v", v, err)
	}
	_, err := c.GetVar(ctx, "nonsense")
	var fail *fastboot.FailError
	if !errors.As(err, &fail) || fail.Message != "Variable not implemented" || fail.Command != "getvar:nonsense" {
		t.Fatalf("getvar nonsense: %v, want the device's FAIL", err)
	}
	if v, err := c.GetVar(ctx, "version"); err != nil || v != "0.4" {
		t.Fatalf("after a FAIL: getvar version = %q, %v", v, err)
	}
}

func TestFlash(t *testing.T) {
	d := startSim(t, fastbootsim.Config{})
	c := dial(t, d.Addr(), fast)
	p := payload(300<<10 + 17)
	if err := c.Flash(context.Background(), "rootfs_a", bytes.NewReader(p), int64(len(p))); err != nil {
		t.Fatal(err)
	}
	if got := d.Partition("rootfs_a"); !bytes.Equal(got[:len(p)], p) {
		t.Fatal("the partition does not hold the payload")
	}
	want := []string{"getvar:max-download-size", "getvar:partition-size:rootfs_a", "download:0004b011", "flash:rootfs_a"}
	if got := d.Commands(); !slices.Equal(got, want) {
		t.Fatalf("commands %q, want %q", got, want)
	}
	if c.PacketData() != fastbootsim.PacketSize-fastboot.HeaderSize {
		t.Errorf("packet data %d, want U-Boot's %d", c.PacketData(), fastbootsim.PacketSize-fastboot.HeaderSize)
	}
}

// failingReader hands out good bytes, then an error, as a verifying reader does at a bad
// chunk.
type failingReader struct {
	good io.Reader
	err  error
}

var errBadChunk = errors.New("chunk 3: hash mismatch")

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.good.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// A payload that fails to read, at any point, flashes nothing and leaves the device usable.
func TestFlashPayloadFailsNothingFlashed(t *testing.T) {
	p := payload(200 << 10)
	for name, r := range map[string]io.Reader{
		"midway":            &failingReader{good: bytes.NewReader(p[:70<<10]), err: errBadChunk},
		"at once":           &failingReader{good: bytes.NewReader(nil), err: errBadChunk},
		"instead of io.EOF": &failingReader{good: bytes.NewReader(p), err: errBadChunk},
		"too long":          io.MultiReader(bytes.NewReader(p), strings.NewReader("x")),
		"too short":         bytes.NewReader(p[:len(p)-1]),
	} {
		t.Run(name, func(t *testing.T) {
			d := startSim(t, fastbootsim.Config{})
			c := dial(t, d.Addr(), fast)
			ctx := context.Background()
			err := c.Flash(ctx, "rootfs_a", r, int64(len(p)))
			if !errors.Is(err, fastboot.ErrAborted) {
				t.Fatalf("Flash: %v, want ErrAborted", err)
			}
			if strings.Contains(name, "instead") || name == "midway" || name == "at once" {
				if !errors.Is(err, errBadChunk) {
					t.Fatalf("Flash: %v, want the reader's error wrapped", err)
				}
			}
			for _, cmd := range d.Commands() {
				if strings.HasPrefix(cmd, "flash:") {
					t.Fatalf("commands %q: a flash after a failed payload", d.Commands())
				}
			}
			if got := d.Partition("rootfs_a"); !bytes.Equal(got, make([]byte, len(got))) {
				t.Fatal("the partition was written")
			}
			// The device left its download state: the next command is a command.
			if v, err := c.GetVar(ctx, "version"); err != nil || v != "0.4" {
				t.Fatalf("after the abort: getvar version = %q, %v", v, err)
			}
		})
	}
}

func TestFlashTooLarge(t *testing.T) {
	d := startSim(t, fastbootsim.Config{MaxDownload: 128 << 10})
	c := dial(t, d.Addr(), fast)
	ctx := context.Background()
	for _, tc := range []struct {
		part string
		size int
		want []string
		msg  string
	}{
		{"rootfs_a", 200 << 10, []string{"getvar:max-download-size"}, "download buffer 131072 (max-download-size)"},
		{"small", 100 << 10, []string{"getvar:max-download-size", "getvar:partition-size:small"}, "partition small 65536"},
	} {
		before := len(d.Commands())
		err := c.Flash(ctx, tc.part, bytes.NewReader(payload(tc.size)), int64(tc.size))
		if !errors.Is(err, fastboot.ErrTooLarge) || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("Flash %s: %v, want ErrTooLarge naming %q", tc.part, err, tc.msg)
		}
		if got := d.Commands()[before:]; !slices.Equal(got, tc.want) {
			t.Fatalf("Flash %s: commands %q, want %q: nothing downloaded", tc.part, got, tc.want)
		}
	}
	if err := c.Download(ctx, strings.NewReader(""), 0); !errors.Is(err, fastboot.ErrTooLarge) {
		t.Fatalf("an empty download: %v, want ErrTooLarge", err)
	}
}

// A device that tells no buffer size gets the download, which it may refuse itself.
func TestFlashWithoutBufferSize(t *testing.T) {
	d := startSim(t, fastbootsim.Config{Mangle: func(n int, p []byte) []byte {
		if n == 3 { // the answer to getvar:max-download-size
			return append(p[:4], "FAILVariable not implemented"...)
		}
		return p
	}})
	c := dial(t, d.Addr(), fast)
	p := payload(5000)
	if err := c.Flash(context.Background(), "rootfs_a", bytes.NewReader(p), int64(len(p))); err != nil {
		t.Fatal(err)
	}
	if got := d.Partition("rootfs_a"); !bytes.Equal(got[:len(p)], p) {
		t.Fatal("the partition does not hold the payload")
	}
}

// A name the device has no size for (U-Boot's "mmc0") goes on to flash, which decides.
func TestFlashPartitionWithoutSize(t *testing.T) {
	d := startSim(t, fastbootsim.Config{})
	c := dial(t, d.Addr(), fast)
	p := payload(5000)
	err := c.Flash(context.Background(), "nothere", bytes.NewReader(p), int64(len(p)))
	var fail *fastboot.FailError
	if !errors.As(err, &fail) || fail.Command != "flash:nothere" || fail.Message != "no such partition" {
		t.Fatalf("Flash: %v, want the device's FAIL of the flash", err)
	}
}

func TestCommandChecks(t *testing.T) {
	d := startSim(t, fastbootsim.Config{})
	c := dial(t, d.Addr(), fast)
	ctx := context.Background()
	for _, part := range []string{strings.Repeat("p", 60), "a\nb", ""} {
		err := c.Flash(ctx, part, strings.NewReader("x"), 1)
		if part == "" {
			continue // "flash:" is a command; the device refuses the empty name
		}
		if !errors.Is(err, fastboot.ErrCommand) {
			t.Fatalf("partition %q: %v, want ErrCommand", part, err)
		}
	}
	if _, err := c.GetVar(ctx, strings.Repeat("v", 60)); !errors.Is(err, fastboot.ErrCommand) {
		t.Fatalf("a long variable name: %v, want ErrCommand", err)
	}
	for _, cmd := range d.Commands() {
		if strings.Contains(cmd, "pppp") || strings.Contains(cmd, "vvvv") || strings.Contains(cmd, "\n") {
			t.Fatalf("command %q reached the device", cmd)
		}
	}
}

// Lost packets both ways are sent again; the device's repeated answers are skipped.
func TestRetransmission(t *testing.T) {
	d := startSim(t, fastbootsim.Config{
		Drop:   func(n int, _ []byte) bool { return n%4 == 3 },
		Mangle: func(n int, p []byte) []byte { return map[bool][]byte{true: nil, false: p}[n%5 == 4] },
	})
	opts := fast
	opts.Timeout = 5 * time.Millisecond
	c := dial(t, d.Addr(), opts)
	p := payload(50 << 10)
	if err := c.Flash(context.Background(), "rootfs_a", bytes.NewReader(p), int64(len(p))); err != nil {
		t.Fatal(err)
	}
	if got := d.Partition("rootfs_a"); !bytes.Equal(got[:len(p)], p) {
		t.Fatal("the partition does not hold the payload")
	}
	if st := c.Stats(); st.Retransmits == 0 || st.Packets < 50 {
		t.Fatalf("stats %+v: want retransmissions", st)
	}
}

// U-Boot's INFO packets during a long flash take the sequence numbers of the packets to
// come; the client follows them and skips the answer U-Boot repeats after.
func TestInfoDuringFlash(t *testing.T) {
	d := startSim(t, fastbootsim.Config{InfoDuringFlash: 2})
	var infos []string
	opts := fast
	opts.Info = func(m string) { infos = append(infos, m) }
	c := dial(t, d.Addr(), opts)
	ctx := context.Background()
	p := payload(3000)
	if err := c.Flash(ctx, "rootfs_a", bytes.NewReader(p), int64(len(p))); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(infos, []string{"writing 0", "writing 1"}) {
		t.Fatalf("INFO messages %q", infos)
	}
	if v, err := c.GetVar(ctx, "version"); err != nil || v != "0.4" {
		t.Fatalf("after the flash: getvar version = %q, %v", v, err)
	}
	if c.Stats().Stale == 0 {
		t.Fatalf("stats %+v: the repeated answer was not seen", c.Stats())
	}
}

// A device that answers garbage gets a clear error. The answers of a session: 0 query, 1
// init, 2 acknowledgement of "getvar:version", 3 its response.
func TestGarbage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer int
		mangle func(p []byte) []byte
		want   string
	}{
		{"short query answer", 0, func(p []byte) []byte { return p[:4] }, "2-byte sequence number"},
		{"tiny packets", 1, func(p []byte) []byte { return append(p[:4], 0, 1, 0, 100) }, "100-byte packets"},
		{"protocol 0", 1, func(p []byte) []byte { return append(p[:4], 0, 0, 4, 0) }, "protocol version 0"},
		{"shorter than the header", 3, func(p []byte) []byte { return p[:3] }, "3-byte packet"},
		{"wrong id", 3, func(p []byte) []byte { p[0] = fastboot.IDInit; return p }, "packet of id 2"},
		{"later sequence number", 3, func(p []byte) []byte { p[3]++; return p }, "sequence number"},
		{"reserved flags", 3, func(p []byte) []byte { p[1] = 0x80; return p }, "reserved flag bits"},
		{"error packet", 3, func(p []byte) []byte { return append([]byte{0, 0, p[2], p[3]}, "busy"...) }, `error packet: "busy"`},
		{"no response", 3, func(p []byte) []byte { return append(p[:4], "HELO"...) }, `"HELO" is not OKAY`},
		{"DATA to getvar", 3, func(p []byte) []byte { return append(p[:4], "DATA00000010"...) }, "answered DATA00000010"},
		{"bad DATA", 3, func(p []byte) []byte { return append(p[:4], "DATAxyz"...) }, "8-digit size"},
		{"data in the acknowledgement", 2, func(p []byte) []byte { return append(p, "OKAY"...) }, "owes an empty acknowledgement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startSim(t, fastbootsim.Config{Mangle: func(n int, p []byte) []byte {
				if n == tc.answer {
					return tc.mangle(p)
				}
				return p
			}})
			c, err := fastboot.Dial(context.Background(), d.Addr(), fast)
			if err == nil {
				defer c.Close()
				_, err = c.GetVar(context.Background(), "version")
			}
			if !errors.Is(err, fastboot.ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrProtocol saying %q", err, tc.want)
			}
		})
	}
}

func TestControlCharactersShownReplaced(t *testing.T) {
	d := startSim(t, fastbootsim.Config{Vars: map[string]string{"evil": "\x1b]0;pwned\x07"}})
	c := dial(t, d.Addr(), fast)
	v, err := c.GetVar(context.Background(), "evil")
	if err != nil || v != ".]0;pwned." {
		t.Fatalf("getvar evil = %q, %v", v, err)
	}
}

// An answer with an earlier sequence number is a repetition: skipped, and the packet is
// sent again until its own answer comes.
func TestStaleAnswerSkipped(t *testing.T) {
	d := startSim(t, fastbootsim.Config{Mangle: func(n int, p []byte) []byte {
		if n == 3 {
			p[3]--
		}
		return p
	}})
	c := dial(t, d.Addr(), fast)
	if v, err := c.GetVar(context.Background(), "version"); err != nil || v != "0.4" {
		t.Fatalf("getvar version = %q, %v", v, err)
	}
	if st := c.Stats(); st.Stale != 1 || st.Retransmits == 0 {
		t.Fatalf("stats %+v: want one stale answer skipped and a retransmission", st)
	}
}

// A command an earlier session left pending runs on U-Boot's next packet; its answer comes
// out of turn and is reported.
func TestPendingCommandOfEarlierSession(t *testing.T) {
	d := startSim(t, fastbootsim.Config{})
	d.LeavePending("getvar:version")
	c := dial(t, d.Addr(), fast)
	_, err := c.GetVar(context.Background(), "product")
	if !errors.Is(err, fastboot.ErrProtocol) || !strings.Contains(err.Error(), `with "OKAY0.4"`) {
		t.Fatalf("got %v, want the out-of-turn answer reported", err)
	}
}

func TestNoResponse(t *testing.T) {
	silent := silentUDP(t)
	opts := fastboot.Options{Timeout: 10 * time.Millisecond, ConnectAttempts: 3}
	_, err := fastboot.Dial(context.Background(), silent.LocalAddr().String(), opts)
	if !errors.Is(err, fastboot.ErrNoResponse) || !strings.Contains(err.Error(), "query packet 0 sent 3 times") {
		t.Fatalf("got %v, want ErrNoResponse after 3 queries", err)
	}
	// Nobody listens on a closed port: Linux says so.
	addr := silent.LocalAddr().String()
	silent.Close()
	_, err = fastboot.Dial(context.Background(), addr, opts)
	if !errors.Is(err, fastboot.ErrNoResponse) {
		t.Fatalf("closed port: %v, want ErrNoResponse", err)
	}
	if runtime.GOOS == "linux" && !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("closed port: %v, want the unreachable port named", err)
	}
}

// silentUDP is a UDP port of 127.0.0.1 where nothing answers; it closes with the test.
func silentUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCancel(t *testing.T) {
	silent := silentUDP(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := fastboot.Dial(ctx, silent.LocalAddr().String(), fastboot.Options{Timeout: time.Hour})
		done <- err
	}()
	if _, _, err := silent.ReadFromUDP(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestReboot(t *testing.T) {
	d := startSim(t, fastbootsim.Config{})
	c := dial(t, d.Addr(), fast)
	if err := c.Reboot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !d.Rebooted() {
		t.Fatal("the device did not reboot")
	}
}
