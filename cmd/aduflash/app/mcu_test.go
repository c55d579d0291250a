package app

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/internal/mcutest"
	"github.com/aduflash/aduflash/smp"
)

// mcuFixture is a simulated MCU on UDP running 1.0.0, and 2.0.0 signed by the key in pub.
type mcuFixture struct {
	mcu      *mcusim.MCU
	addr     string
	pub, img string
	hash     string
}

func newMCUFixture(t *testing.T, cfg mcusim.Config) *mcuFixture {
	t.Helper()
	s := mcutest.NewSigner(t)
	dir := t.TempDir()
	_, pub := s.WriteKeys(t, dir)
	v2 := s.Image(t, "2.0.0", 30000)
	fx := &mcuFixture{pub: pub, img: filepath.Join(dir, "app-2.0.0.signed.bin"), hash: hex.EncodeToString(mcutest.Hash(t, v2))}
	mustWrite(t, fx.img, v2)
	cfg.Primary, cfg.Keyring = s.Image(t, "1.0.0", 20000), s.Keyring
	m, err := mcusim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.ServeUDP(ctx, pc) }()
	t.Cleanup(func() { cancel(); <-done })
	fx.mcu, fx.addr = m, pc.LocalAddr().String()
	return fx
}

// mcu runs aduflash mcu CMD against the fixture's MCU.
func (fx *mcuFixture) run(t *testing.T, cmd string, args ...string) (int, string, string) {
	t.Helper()
	return run(t, append([]string{"mcu", cmd, "--udp", fx.addr, "--timeout", "200ms"}, args...)...)
}

func (fx *mcuFixture) list(t *testing.T) []mcuImage {
	t.Helper()
	code, out, errOut := fx.run(t, "list", "--json")
	var res mcuResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.OK {
		t.Fatalf("list: exit %d, %v, stdout %q, stderr %q", code, err, out, errOut)
	}
	return res.Images
}

func (fx *mcuFixture) running(t *testing.T) mcuImage {
	t.Helper()
	for _, im := range fx.list(t) {
		if im.Active {
			return im
		}
	}
	t.Fatal("no active image")
	return mcuImage{}
}

// The whole update with aduflash mcu: upload (verified), test, reset into it, confirm.
func TestMCUUpdate(t *testing.T) {
	fx := newMCUFixture(t, mcusim.Config{})
	code, out, errOut := fx.run(t, "upload", "--pub", fx.pub, fx.img)
	if code != 0 || !strings.Contains(out, "(mcuboot 2.0.0, hash "+fx.hash+")") || !strings.Contains(out, "verified and uploaded") {
		t.Fatalf("upload: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, out, _ = fx.run(t, "test", fx.img); code != 0 || !strings.Contains(out, "pending") {
		t.Fatalf("test: exit %d, %q", code, out)
	}
	if code, out, _ = fx.run(t, "reset"); code != 0 {
		t.Fatalf("reset: exit %d, %q", code, out)
	}
	if r := fx.running(t); r.Version != "2.0.0" || r.Confirmed || r.Hash != fx.hash {
		t.Fatalf("after the reset: %+v", r)
	}
	if code, out, _ = fx.run(t, "confirm"); code != 0 || !strings.Contains(out, "active,confirmed") {
		t.Fatalf("confirm: exit %d, %q", code, out)
	}
	if code, out, _ = fx.run(t, "echo", "hi"); code != 0 || out != "hi\n" {
		t.Fatalf("echo: exit %d, %q", code, out)
	}
}

// Nothing reaches the MCU before the image is verified: a bad signature, an image larger
// than --slot-size or than the slot the MCU reports, an aduimg; usage errors; a silent MCU.
func TestMCURefuses(t *testing.T) {
	s := mcutest.NewSigner(t)
	dir := t.TempDir()
	_, otherPub := s.WriteKeys(t, dir)
	fx, small := newMCUFixture(t, mcusim.Config{}), newMCUFixture(t, mcusim.Config{SlotSize: 28 << 10})
	fxApp := newFixture(t)
	for _, c := range []struct {
		name string
		fx   *mcuFixture
		args []string
		code int
		want string
	}{
		{"bad signature", fx, []string{"upload", "--pub", otherPub, fx.img}, 1, "app-2.0.0.signed.bin"},
		{"slot size", fx, []string{"upload", "--pub", fx.pub, "--slot-size", "16384", fx.img}, 1, "the slot takes"},
		{"device slot", small, []string{"upload", "--pub", small.pub, small.img}, 1, "the slot takes 28"},
		{"aduimg", fx, []string{"upload", "--pub", fxApp.pub, fxApp.img}, 1, "not an MCUboot image"},
		{"no key", fx, []string{"upload", fx.img}, 2, "--pub or --keyring"},
		{"no hash", fx, []string{"test"}, 2, "expected HASH or IMAGE"},
		{"bad hash", fx, []string{"test", "xyz"}, 1, "neither an image file nor an image hash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := c.fx.run(t, c.args[0], c.args[1:]...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, c.code, out, errOut, c.want)
			}
			if d := c.fx.mcu.Stats().Data; d != 0 {
				t.Fatalf("%d image bytes reached the MCU", d)
			}
		})
	}
	if code, _, errOut := run(t, "mcu", "list", "--udp", fx.addr, "--port", "/dev/null"); code != 2 || !strings.Contains(errOut, "give one") {
		t.Fatalf("--port and --udp: exit %d, %q", code, errOut)
	}
	if code, _, errOut := run(t, "mcu", "list"); code != 2 || !strings.Contains(errOut, "missing --port or --udp") {
		t.Fatalf("no MCU: exit %d, %q", code, errOut)
	}
	silent, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer silent.Close()
	code, _, errOut := run(t, "mcu", "echo", "--udp", silent.LocalAddr().String(), "--timeout", "20ms", "x")
	if code != 3 || !strings.Contains(errOut, "no reply from the device") {
		t.Fatalf("silent MCU: exit %d, %q", code, errOut)
	}
}

// An upload cut by an MCU that stops answering is finished by --resume from the offset the
// MCU reports: no byte it acknowledged goes again beyond one frame.
func TestMCUResume(t *testing.T) {
	var mute atomic.Bool
	mute.Store(true)
	fx := newMCUFixture(t, mcusim.Config{Fault: func(n int, h smp.Header) mcusim.Fault {
		if mute.Load() && n > 15 {
			return mcusim.Fault{Kind: mcusim.FaultReset}
		}
		return mcusim.Fault{}
	}})
	if code, _, errOut := fx.run(t, "upload", "--pub", fx.pub, "--json", fx.img); code != 3 || fx.mcu.Stats().Data == 0 {
		t.Fatalf("cut upload: exit %d, %q", code, errOut)
	}
	mute.Store(false)
	code, out, errOut := fx.run(t, "upload", "--pub", fx.pub, "--resume", "--json", fx.img)
	var res mcuResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.OK || res.Hash != fx.hash {
		t.Fatalf("resumed upload: exit %d, %v, %q, %q", code, err, out, errOut)
	}
	if st := fx.mcu.Stats(); st.Resent > mcusim.DefaultBufSize {
		t.Fatalf("%d acknowledged bytes sent again", st.Resent)
	}
	img, _ := os.ReadFile(fx.img)
	if got := fx.mcu.Slot(1)[:len(img)]; string(got) != string(img) {
		t.Fatal("the secondary slot does not hold the image")
	}
}
