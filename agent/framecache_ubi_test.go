package agent

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
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
		if names, _ := d.FS().Inspect().ReadDir(filepath.Join(stateDir, FrameCacheDir)); len(names) != 0 {
			t.Fatalf("the frame cache holds %v after the install", names)
		}
		t.Logf("cache %d: fetched %d bytes, then %d after the cut (%d of the store)", cache, first, again, store)
	}
}

// cachedBytes is what the agent's frame cache holds for the image of x, as the next start
// finds it.
func cachedBytes(t *testing.T, d *device, x *adaptive.Index) int64 {
	t.Helper()
	fsys := d.FS().Inspect()
	dir := filepath.Join(stateDir, FrameCacheDir)
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, name := range names {
		if !strings.HasPrefix(name, hexHeader(x)+"-") {
			continue
		}
		b, err := fsys.ReadFile(filepath.Join(dir, name), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		n += int64(len(b))
	}
	return n
}

// A power cut at each operation from the start of the UBI volume update to its end (volume
// writes, journal saves, the frame cache's file operations; the fetches run beside the writes,
// so which operation a count falls on varies): after it, the deployment installs the image
// and fetches exactly the planned ranges the cache did not keep whole, never a kept one.
func TestAdaptiveUBIPowerCutEveryOperation(t *testing.T) {
	v1 := payload(1, 768<<10)
	v2 := slices.Concat(v1[:100<<10], adaptivetest.Noise(9, 40<<10), v1[100<<10:], adaptivetest.Noise(10, 30<<10))
	type setup struct {
		d   *device
		srv *server
		u   *update
		x   *adaptive.Index
		vol *boardVolume
		h   *testHub
		o   func(*Options)
	}
	start := func() setup {
		d := newDevice(t, v1)
		srv := newServer(t)
		u := newAdaptiveUpdate(t, srv, "2.0", v2, nil, func(idx []byte) []byte { return idx })
		x, err := adaptive.ParseIndex(u.index)
		if err != nil {
			t.Fatal(err)
		}
		vol := &boardVolume{p: d.Power(), reserved: 1 << 20}
		layout := ubiLayout(d, vol)
		h := newHub(t)
		h.full(u.adaptiveService(srv.URL, "wf-2"))
		return setup{d, srv, u, x, vol, h, func(o *Options) { o.Layout, o.AdaptiveCache = layout, 1<<20 }}
	}
	// The operations of a deployment without a cut: where the volume update starts and ends.
	ref := start()
	ref.d.Power().Record()
	if err := runAgent(t, ref.d.agent(ref.o), ref.h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatal(err)
	}
	plan := ref.d.agent(ref.o).Record().Deployment.Steps[0].Progress.Adaptive.Planned
	first, last := -1, -1
	for i, op := range ref.d.Power().Recorded() {
		if op.Where == "ubi" {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 || plan <= 0 {
		t.Fatalf("the reference deployment: no volume update (%d), %d bytes of the store", first, plan)
	}
	cutsKept := 0
	for k := first; k <= last; k++ {
		s := start()
		s.d.Power().CutAt(k, powersim.TearNone)
		if err := runAgent(t, s.d.agent(s.o), s.h, nil); !errors.Is(err, powersim.ErrPowerCut) {
			t.Fatalf("cut at operation %d: the first attempt: %v", k, err)
		}
		s.d.Power().On()
		kept := cachedBytes(t, s.d, s.x)
		s.d.reset()
		var logs bytes.Buffer
		s.d.logs = &logs
		s.h.full(s.u.adaptiveService(s.srv.URL, "wf-2"))
		if err := runAgent(t, s.d.agent(s.o), s.h, nil); !errors.Is(err, ErrRebooting) {
			t.Fatalf("cut at operation %d: after it: %v; reports %v", k, err, s.h.all())
		}
		if !bytes.Equal(s.vol.data, v2) || s.vol.marker || s.d.bootState().Pending != "B" {
			t.Fatalf("cut at operation %d: the volume holds %d bytes (marker %v), pending %q", k, len(s.vol.data), s.vol.marker, s.d.bootState().Pending)
		}
		// The install's own counts: the server's would mix in what the cut attempt's fetches
		// sent after the cut.
		ad := s.d.agent(s.o).Record().Deployment.Steps[0].Progress.Adaptive
		if store := ad.Fetched - s.x.HeaderSize; store != plan-kept || ad.Cached != kept || ad.Planned != plan {
			t.Fatalf("cut at operation %d: after it %d bytes of the store were fetched and %d taken from the cache (plan %d); %d planned, %d kept in the cache\n%s",
				k, store, ad.Cached, ad.Planned, plan, kept, logs.String())
		}
		if kept > 0 {
			cutsKept++
		}
	}
	if cutsKept == 0 {
		t.Fatal("no cut left a range in the cache")
	}
	t.Logf("%d cut points, %d of them with ranges kept; %d bytes of the store planned", last-first+1, cutsKept, plan)
}
