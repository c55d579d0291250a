package agent

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/adaptivetest"
	"github.com/aduflash/aduflash/internal/bytesize"
	"github.com/aduflash/aduflash/internal/powersim"
	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/slots"
)

// boardVolume is a simulated UBI volume (mtdsim.Volume) on the board's power: its update
// start, writes and close are operations of the board's power switch, reads fail while the
// power is off, and cut arms the switch once that many bytes of an update were written.
type boardVolume struct {
	*mtdsim.Volume
	p   *powersim.Power
	cut int64
}

type boardUpdate struct {
	v *boardVolume
	w io.WriteCloser
	n int64
}

func newBoardVolume(p *powersim.Power, reserved, cut int64) *boardVolume {
	return &boardVolume{Volume: mtdsim.NewVolume(reserved), p: p, cut: cut}
}

func (v *boardVolume) Update(size int64) (io.WriteCloser, error) {
	if err := v.p.Op(powersim.Erase, "ubi"); err != nil {
		return nil, err
	}
	w, err := v.Volume.Update(size)
	return &boardUpdate{v: v, w: w}, err
}

func (v *boardVolume) ReadAt(p []byte, off int64) (int, error) {
	if err := v.p.Check(); err != nil {
		return 0, err
	}
	return v.Volume.ReadAt(p, off)
}

func (u *boardUpdate) Write(p []byte) (int, error) {
	if u.v.cut > 0 && u.n+int64(len(p)) >= u.v.cut {
		u.v.cut = 0
		u.v.p.CutAfter(0)
	}
	if err := u.v.p.Op(powersim.Program, "ubi"); err != nil {
		return 0, err
	}
	n, err := u.w.Write(p)
	u.n += int64(n)
	return n, err
}

func (u *boardUpdate) Close() error {
	if err := u.v.p.Op(powersim.Sync, "ubi"); err != nil {
		return err
	}
	return u.w.Close()
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

// ubiDeployment is an adaptive deployment of v2 to a board running v1 whose bank B rootfs
// slot is a UBI volume (vol), its hub told of it; o gives an agent that slot layout and a
// frame cache of cache bytes.
type ubiDeployment struct {
	d   *device
	srv *server
	u   *update
	x   *adaptive.Index
	vol *boardVolume
	h   *testHub
	o   func(*Options)
}

// newUBIDeployment sets up an ubiDeployment; the power fails once cut bytes (> 0) of the
// volume's update were written.
func newUBIDeployment(t *testing.T, v1, v2 []byte, cut, cache int64) ubiDeployment {
	t.Helper()
	d := newDevice(t, v1)
	srv := newServer(t)
	u := newAdaptiveUpdate(t, srv, "2.0", v2, nil, func(idx []byte) []byte { return idx })
	x, err := adaptive.ParseIndex(u.index)
	if err != nil {
		t.Fatal(err)
	}
	vol := newBoardVolume(d.Power(), 1<<20, cut)
	layout := ubiLayout(d, vol)
	h := newHub(t)
	h.full(u.adaptiveService(srv.URL, "wf-2"))
	return ubiDeployment{d, srv, u, x, vol, h, func(o *Options) { o.Layout, o.AdaptiveCache = layout, bytesize.Size(cache) }}
}

// An adaptive install into a UBI volume that a power cut interrupts starts over after it,
// and takes the chunk store's ranges it had fetched from the agent's frame cache: the second
// attempt fetches the index and the image header again, nothing of the store. The cache is
// gone once the install ends. Without the cache, the same cut costs the store's ranges again.
func TestAdaptiveUBIPowerCut(t *testing.T) {
	v1 := payload(1, 768<<10)
	v2 := slices.Concat(v1[:100<<10], adaptivetest.Noise(9, 40<<10), v1[100<<10:])
	for _, cache := range []int64{1 << 20, 0} {
		s := newUBIDeployment(t, v1, v2, int64(len(v2))*9/10, cache)
		d, srv, u, x, vol, h, opts := s.d, s.srv, s.u, s.x, s.vol, s.h, s.o
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
		if !bytes.Equal(vol.Data(), v2) || d.bootState().Pending != "B" {
			t.Fatalf("cache %d: the volume holds %d bytes (marker %v), pending %q", cache, len(vol.Data()), vol.Marked(), d.bootState().Pending)
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
	start := func() ubiDeployment { return newUBIDeployment(t, v1, v2, 0, 1<<20) }
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
		if !bytes.Equal(s.vol.Data(), v2) || s.d.bootState().Pending != "B" {
			t.Fatalf("cut at operation %d: the volume holds %d bytes (marker %v), pending %q", k, len(s.vol.Data()), s.vol.Marked(), s.d.bootState().Pending)
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
