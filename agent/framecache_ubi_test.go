package agent

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/adaptivetest"
	"github.com/aduflash/aduflash/internal/powersim"
	"github.com/aduflash/aduflash/slots"
)

// boardVolume is a UBI volume on the board's power: an update erases it and sets its update
// marker, reads fail while the marker is set, and the power fails once cut bytes of an
// update were written (the marker stays: what was written is lost).
type boardVolume struct {
	p        *powersim.Power
	mu       sync.Mutex
	data     []byte
	marker   bool
	reserved int64
	cut      int64
}

type boardUpdate struct {
	v    *boardVolume
	size int64
	buf  bytes.Buffer
}

func (v *boardVolume) Update(size int64) (io.WriteCloser, error) {
	if err := v.p.Op(powersim.Erase, "ubi"); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.data, v.marker = nil, true
	return &boardUpdate{v: v, size: size}, nil
}

func (v *boardVolume) ReservedSize() int64 { return v.reserved }

func (v *boardVolume) ReadAt(p []byte, off int64) (int, error) {
	if err := v.p.Check(); err != nil {
		return 0, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.marker {
		return 0, errors.New("ubi: damaged volume, update marker is set")
	}
	if off >= int64(len(v.data)) {
		return 0, io.EOF
	}
	n := copy(p, v.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (u *boardUpdate) Write(p []byte) (int, error) {
	if u.v.cut > 0 && int64(u.buf.Len()+len(p)) >= u.v.cut {
		u.v.cut = 0
		u.v.p.CutAfter(0)
	}
	if err := u.v.p.Op(powersim.Program, "ubi"); err != nil {
		return 0, err
	}
	return u.buf.Write(p)
}

func (u *boardUpdate) Close() error {
	if err := u.v.p.Op(powersim.Sync, "ubi"); err != nil {
		return err
	}
	u.v.mu.Lock()
	defer u.v.mu.Unlock()
	if int64(u.buf.Len()) != u.size {
		return errors.New("ubi: update closed early")
	}
	u.v.data, u.v.marker = bytes.Clone(u.buf.Bytes()), false
	return nil
}

// ubiLayout is the board's layout with bank B's rootfs slot a UBI volume, vol.
func ubiLayout(d *device, vol *boardVolume) *slots.Layout {
	l := d.Layout()
	cfg := *l.Config
	cfg.Slots = slices.Clone(cfg.Slots)
	for i, s := range cfg.Slots {
		if s.Bank == "B" && s.Class == "rootfs" {
			cfg.Slots[i] = slots.SlotConfig{Name: s.Name, Class: s.Class, Bank: s.Bank, Type: slots.TypeUBI, UBIVolume: "rootfs_b"}
		}
	}
	env := l.Env
	env.OpenVolume = func(*slots.Slot) (slots.Volume, error) { return vol, nil }
	return slots.NewLayout(&cfg, env)
}

// An adaptive install into a UBI volume that a power cut interrupts starts over after it,
// and takes the chunk store's ranges it had fetched from the agent's frame cache: the second
// attempt fetches the index and the image header again, nothing of the store. The cache is
// gone once the install ends. Without the cache, the same cut costs the store's ranges again.
func TestAdaptiveUBIPowerCut(t *testing.T) {
	v1 := payload(1, 768<<10)
	v2 := slices.Concat(v1[:100<<10], adaptivetest.Noise(9, 40<<10), v1[100<<10:])
	for _, cache := range []int64{1 << 20, 0} {
		d := newDevice(t, v1)
		srv := newServer(t)
		u := newAdaptiveUpdate(t, srv, "2.0", v2, nil, func(idx []byte) []byte { return idx })
		x, err := adaptive.ParseIndex(u.index)
		if err != nil {
			t.Fatal(err)
		}
		vol := &boardVolume{p: d.Power(), reserved: 1 << 20, cut: int64(len(v2)) * 9 / 10}
		layout := ubiLayout(d, vol)
		opts := func(o *Options) { o.Layout, o.AdaptiveCache = layout, bytesizeOf(cache) }
		h := newHub(t)
		h.full(u.adaptiveService(srv.URL, "wf-2"))
		if err := runAgent(t, d.agent(opts), h, nil); !errors.Is(err, powersim.ErrPowerCut) {
			t.Fatalf("cache %d: the first attempt: %v", cache, err)
		}
		first := srv.Sent.Load()
		d.Power().On()
		d.reset()
		h.full(u.adaptiveService(srv.URL, "wf-2"))
		if err := runAgent(t, d.agent(opts), h, nil); !errors.Is(err, ErrRebooting) {
			t.Fatalf("cache %d: the attempt after the cut: %v; reports %v", cache, err, h.all())
		}
		if !bytes.Equal(vol.data, v2) || vol.marker || d.bootState().Pending != "B" {
			t.Fatalf("cache %d: the volume holds %d bytes (marker %v), pending %q", cache, len(vol.data), vol.marker, d.bootState().Pending)
		}
		again := srv.Sent.Load() - first
		store := again - int64(len(u.index)) - x.HeaderSize
		if cache > 0 && store != 0 || cache == 0 && store <= 0 {
			t.Fatalf("cache %d: after the cut %d bytes were fetched: %d besides the index and the header (the first attempt: %d)", cache, again, store, first)
		}
		if left := d.FS().Inspect().ReadDir; cache > 0 {
			names, _ := left(filepath.Join(stateDir, FrameCacheDir, hexHeader(x)))
			if len(names) != 0 {
				t.Fatalf("the frame cache holds %v after the install", names)
			}
		}
		t.Logf("cache %d: fetched %d bytes, then %d after the cut (%d of the store)", cache, first, again, store)
	}
}
