package mcusim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/internal/mcutest"
	"github.com/aduflash/aduflash/smp"
)

// update drives an MCU to run img confirmed, as the gateway's agent does after any
// interruption: it asks where the MCU stands and takes the next step (upload from the last
// acknowledged offset, test, reset, confirm) until the MCU runs img confirmed.
func update(ctx context.Context, c *smp.Client, img []byte) error {
	hash, sum := imageHash(img), sha256.Sum256(img)
	var acked int64
	for range 20 {
		list, err := c.ImageState(ctx)
		if err != nil {
			continue
		}
		st := smp.FindImage(list, hash)
		switch {
		case st != nil && st.Active && st.Confirmed:
			return nil
		case st != nil && st.Active:
			_, err = c.Confirm(ctx, hash)
		case st != nil && st.Pending:
			err = c.Reset(ctx)
		case st != nil:
			_, err = c.Test(ctx, hash)
		default:
			err = c.Upload(ctx, bytes.NewReader(img), int64(len(img)), sum[:], acked, func(off int64) { acked = off })
		}
		// A request whose reply was lost may have happened: a test sent again after the
		// MCU took it and reset into the image is refused (rc 6); the next look tells.
		if err != nil && !errors.Is(err, smp.ErrTimeout) && !errors.Is(err, smp.ErrDevice) {
			return err
		}
	}
	return errors.New("the MCU does not run the image after 20 steps")
}

var imageHash func([]byte) []byte

// A fault at every request of an update (a reset before the request, a reset that eats the
// reply, a power cut during the request's first or second flash write): the MCU always
// boots a good image, the update completes, and no byte the MCU acknowledged is sent again
// beyond one frame.
func TestFaultAtEveryRequest(t *testing.T) {
	s := mcutest.NewSigner(t)
	imageHash = func(img []byte) []byte { return mcutest.Hash(t, img) }
	v1, v2 := s.Image(t, "1.0.0", 12000), s.Image(t, "2.0.0", 16000)
	opts := smp.Options{Timeout: 100 * time.Millisecond, EraseTimeout: 200 * time.Millisecond, Retries: 2, MaxPacket: 1024}
	run := func(fault func(n int, h smp.Header) mcusim.Fault) (*mcusim.MCU, error) {
		m, err := mcusim.New(mcusim.Config{Primary: v1, Keyring: s.Keyring, Fault: fault})
		if err != nil {
			t.Fatal(err)
		}
		c := mcutest.Connect(t, m, smp.SerialOptions{LineSize: 128}, opts)
		return m, update(context.Background(), c, v2)
	}
	clean, err := run(nil)
	if err != nil {
		t.Fatal(err)
	}
	requests := clean.Stats().Requests
	faults := []mcusim.Fault{{Kind: mcusim.FaultReset}, {Kind: mcusim.FaultLostReply},
		{Kind: mcusim.FaultPowerCut, Ops: 0}, {Kind: mcusim.FaultPowerCut, Ops: 1}}
	step := 1
	if testing.Short() {
		step = 4
	}
	for k := 1; k <= requests; k += step {
		for _, f := range faults {
			t.Run(fmt.Sprintf("request %d, fault %d ops %d", k, f.Kind, f.Ops), func(t *testing.T) {
				m, err := run(func(n int, _ smp.Header) mcusim.Fault {
					if n == k {
						return f
					}
					return mcusim.Fault{}
				})
				if err != nil {
					t.Fatal(err)
				}
				st := m.Stats()
				if st.BadBoots != 0 {
					t.Errorf("%d boots without a good image", st.BadBoots)
				}
				if st.Resent > int64(opts.MaxPacket) {
					t.Errorf("%d acknowledged bytes sent again, more than a frame", st.Resent)
				}
				if img := m.Running(); img == nil || img.Header.Version.Major != 2 {
					t.Errorf("running %v, want 2.0.0", img)
				}
			})
		}
	}
}
