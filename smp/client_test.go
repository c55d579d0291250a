package smp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/internal/mcutest"
	"github.com/aduflash/aduflash/smp"
)

// fast keeps the tests' timeouts short: the simulated MCU answers at once.
var fast = smp.Options{Timeout: 300 * time.Millisecond, EraseTimeout: time.Second}

func newMCU(t *testing.T, s *mcutest.Signer, cfg mcusim.Config) *mcusim.MCU {
	t.Helper()
	if cfg.Primary == nil {
		cfg.Primary = s.Image(t, "1.0.0", 20000)
	}
	m, err := mcusim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCommands(t *testing.T) {
	s := mcutest.NewSigner(t)
	m := newMCU(t, s, mcusim.Config{})
	c := mcutest.Connect(t, m, smp.SerialOptions{}, fast)
	ctx := context.Background()
	if r, err := c.Echo(ctx, "hello"); err != nil || r != "hello" {
		t.Fatalf("echo = %q, %v", r, err)
	}
	if p, err := c.Params(ctx); err != nil || p.BufSize != mcusim.DefaultBufSize {
		t.Fatalf("params = %+v, %v", p, err)
	}
	if out, err := c.OSInfo(ctx, ""); err != nil || out != "mcusim 1.0.0 mcuboot" {
		t.Fatalf("os info = %q, %v", out, err)
	}
	list, err := c.ImageState(ctx)
	if err != nil || len(list) != 1 || !list[0].Active || !list[0].Confirmed || list[0].Version != "1.0.0" {
		t.Fatalf("image list = %+v, %v", list, err)
	}
	info, err := c.SlotInfo(ctx)
	if err != nil || len(info) != 1 || len(info[0].Slots) != 2 || info[0].Slots[1].Size != mcusim.DefaultSlotSize {
		t.Fatalf("slot info = %+v, %v", info, err)
	}
	if err := c.Erase(ctx, 0); !errors.Is(err, smp.ErrDevice) {
		t.Fatalf("erasing the running slot: %v, want a device error", err)
	}
	v2 := mcutest.Connect(t, m, smp.SerialOptions{}, smp.Options{Version: 2, Timeout: fast.Timeout})
	if r, err := v2.Echo(ctx, "v2"); err != nil || r != "v2" {
		t.Fatalf("SMP version 2 echo = %q, %v", r, err)
	}
}

// upload sends img and checks that it landed in the secondary slot.
func upload(t *testing.T, c *smp.Client, m *mcusim.MCU, img []byte, start int64) []int64 {
	t.Helper()
	var acked []int64
	sum := sha256.Sum256(img)
	if err := c.Upload(context.Background(), bytes.NewReader(img), int64(len(img)), sum[:], start, func(off int64) { acked = append(acked, off) }); err != nil {
		t.Fatal(err)
	}
	if got := m.Slot(1)[:len(img)]; !bytes.Equal(got, img) {
		t.Fatal("the secondary slot does not hold the image")
	}
	return acked
}

func active(t *testing.T, c *smp.Client) smp.SlotState {
	t.Helper()
	list, err := c.ImageState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.Active {
			return s
		}
	}
	t.Fatalf("no active image in %+v", list)
	return smp.SlotState{}
}

// The whole cycle: upload, test, reset into the new image (not confirmed), confirm, reset:
// it stays; a second image tested and not confirmed is reverted at the reset after.
func TestUploadTestConfirmRevert(t *testing.T) {
	s := mcutest.NewSigner(t)
	m := newMCU(t, s, mcusim.Config{Keyring: s.Keyring})
	c := mcutest.Connect(t, m, smp.SerialOptions{}, fast)
	ctx := context.Background()
	v2 := s.Image(t, "2.0.0", 30000)
	acked := upload(t, c, m, v2, 0)
	if acked[len(acked)-1] != int64(len(v2)) || len(acked) < 2 {
		t.Fatalf("acknowledged offsets %v", acked)
	}
	list, err := c.Test(ctx, mcutest.Hash(t, v2))
	if st := smp.FindImage(list, mcutest.Hash(t, v2)); err != nil || st == nil || !st.Pending || st.Permanent {
		t.Fatalf("after test: %+v, %v", list, err)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if a := active(t, c); a.Version != "2.0.0" || a.Confirmed {
		t.Fatalf("after the reset: %+v, want 2.0.0 on trial", a)
	}
	if _, err := c.Confirm(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if a := active(t, c); a.Version != "2.0.0" || !a.Confirmed {
		t.Fatalf("after confirm and reset: %+v", a)
	}

	// The secondary slot holds 1.0.0 since the swap: the same image again goes whole.
	upload(t, c, m, v2, 0)

	v3 := s.Image(t, "3.0.0", 25000)
	upload(t, c, m, v3, 0)
	if _, err := c.Test(ctx, mcutest.Hash(t, v3)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3.0.0", "2.0.0"} {
		if err := c.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if a := active(t, c); a.Version != want {
			t.Fatalf("active %s, want %s", a.Version, want)
		}
	}
}

// An image whose signature MCUboot does not accept is erased at the reset, not booted.
func TestBadSignatureNotBooted(t *testing.T) {
	s, other := mcutest.NewSigner(t), mcutest.NewSigner(t)
	m := newMCU(t, s, mcusim.Config{Keyring: s.Keyring})
	c := mcutest.Connect(t, m, smp.SerialOptions{}, fast)
	bad := other.Image(t, "9.0.0", 10000)
	upload(t, c, m, bad, 0)
	if _, err := c.Test(context.Background(), mcutest.Hash(t, bad)); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := active(t, c); a.Version != "1.0.0" {
		t.Fatalf("active %s after an image signed by another key", a.Version)
	}
}

// An upload cut short resumes where the MCU stands: no acknowledged byte is sent again
// beyond one frame, whether the client knows the offset or starts from 0 with the sha.
func TestUploadResume(t *testing.T) {
	s := mcutest.NewSigner(t)
	img := s.Image(t, "2.0.0", 60000)
	for name, start := range map[string]func(acked int64) int64{
		"from the journal's offset": func(acked int64) int64 { return acked },
		"from 0, found by sha":      func(int64) int64 { return 0 },
		"from a stale offset":       func(acked int64) int64 { return acked / 2 },
	} {
		t.Run(name, func(t *testing.T) {
			m := newMCU(t, s, mcusim.Config{})
			c := mcutest.Connect(t, m, smp.SerialOptions{}, fast)
			ctx, cancel := context.WithCancel(context.Background())
			var acked int64
			sum := sha256.Sum256(img)
			err := c.Upload(ctx, bytes.NewReader(img), int64(len(img)), sum[:], 0, func(off int64) {
				if acked = off; off > int64(len(img))/2 {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted upload: %v", err)
			}
			if err := m.Reset(); err != nil { // and the MCU reset meanwhile
				t.Fatal(err)
			}
			c2 := mcutest.Connect(t, m, smp.SerialOptions{}, fast)
			before := m.Stats().Data
			upload(t, c2, m, img, start(acked))
			frame, _ := c2.MaxPacket(context.Background())
			if resent := m.Stats().Resent; resent > int64(frame) {
				t.Errorf("%d acknowledged bytes sent again, more than one frame (%d)", resent, frame)
			}
			if sent := m.Stats().Data - before; sent > int64(len(img))-acked+2*int64(frame) {
				t.Errorf("the resumed upload sent %d bytes for the %d left", sent, int64(len(img))-acked)
			}
		})
	}
}

// MCUs with a 128-byte line buffer: lines of 128 work, longer ones get no answer.
func TestLineSize(t *testing.T) {
	s := mcutest.NewSigner(t)
	m := newMCU(t, s, mcusim.Config{MaxLine: 128})
	c := mcutest.Connect(t, m, smp.SerialOptions{LineSize: 128}, fast)
	upload(t, c, m, s.Image(t, "2.0.0", 5000), 0)
	long := mcutest.Connect(t, m, smp.SerialOptions{LineSize: 200}, smp.Options{Timeout: 100 * time.Millisecond, Retries: -1, MaxPacket: 512})
	_, err := long.Echo(context.Background(), string(bytes.Repeat([]byte("x"), 300)))
	if !errors.Is(err, smp.ErrTimeout) {
		t.Fatalf("200-byte lines to a 128-byte line buffer: %v, want no reply", err)
	}
}

// A device that does not answer "mcumgr params" (MCUboot's serial recovery) gets
// DefaultMaxPacket; one that does, its buffer size.
func TestPacketSize(t *testing.T) {
	s := mcutest.NewSigner(t)
	for _, c := range []struct {
		cfg  mcusim.Config
		want int
	}{
		{mcusim.Config{NoParams: true}, smp.DefaultMaxPacket},
		{mcusim.Config{BufSize: 2048}, 2048},
	} {
		m := newMCU(t, s, c.cfg)
		cl := mcutest.Connect(t, m, smp.SerialOptions{}, fast)
		if n, err := cl.MaxPacket(context.Background()); err != nil || n != c.want {
			t.Errorf("%+v: packet size %d, %v; want %d", c.cfg, n, err, c.want)
		}
		upload(t, cl, m, s.Image(t, "2.0.0", 3000), 0)
	}
}

func TestUDP(t *testing.T) {
	s := mcutest.NewSigner(t)
	m := newMCU(t, s, mcusim.Config{})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.ServeUDP(ctx, pc)
	u, err := smp.Open(ctx, smp.Endpoint{UDP: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	c := smp.NewClient(u, fast)
	defer c.Close()
	if r, err := c.Echo(ctx, "udp"); err != nil || r != "udp" {
		t.Fatalf("echo = %q, %v", r, err)
	}
	upload(t, c, m, s.Image(t, "2.0.0", 9000), 0)
}

func TestEndpoint(t *testing.T) {
	for _, e := range []smp.Endpoint{{}, {Port: "/dev/ttyACM0", UDP: "10.0.0.2"}} {
		if _, err := smp.Open(context.Background(), e); !errors.Is(err, smp.ErrEndpoint) {
			t.Errorf("%+v: %v, want ErrEndpoint", e, err)
		}
	}
	if s := (smp.Endpoint{UDP: "10.0.0.2"}).String(); s != "10.0.0.2:1337" {
		t.Errorf("UDP endpoint %q", s)
	}
}
