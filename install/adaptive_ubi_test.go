package install

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/slots"
)

// onUBI makes bank B's rootfs slot of the case's device a UBI volume, vol.
func (c *adaptiveCase) onUBI(t *testing.T, vol *mtdsim.Volume) {
	t.Helper()
	cfg, err := slots.ParseConfig(fmt.Appendf(nil, `[slots]
sync_interval = "64KiB"
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "file"
path = %q
size = "4MiB"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "ubi"
ubi_volume = "rootfs_b"
`, filepath.Join(c.d.dir, "rootfs-A")))
	if err != nil {
		t.Fatal(err)
	}
	c.d.layout = slots.NewLayout(cfg, slots.Env{Cmdline: filepath.Join(c.d.dir, "cmdline"),
		OpenVolume: func(s *slots.Slot) (slots.Volume, error) {
			if s.UBIVolume != "rootfs_b" {
				return nil, fmt.Errorf("no volume %q", s.UBIVolume)
			}
			return vol, nil
		}})
}

// An adaptive install into a UBI volume streams the assembled payload as one volume update
// of its exact size, in order, and reads it back. After a power cut in the middle of it (the
// volume left with its update marker, unreadable), the install from the record saved starts
// a new update at 0 (UBI cannot continue one) and fetches again at most what bank A lacks:
// never the whole image, and it does not read the damaged volume as a source.
func TestAdaptiveIntoUBIVolume(t *testing.T) {
	c := newAdaptiveCase(t)
	vol := mtdsim.NewVolume(4 << 20)
	c.onUBI(t, vol)
	rec, err := c.install(t, c.d.installer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Format != FormatAdaptive || rec.Adaptive.Fallback != "" || !bytes.Equal(vol.Data(), c.new) {
		t.Fatalf("format %s, adaptive %+v; the volume holds %d bytes (want the %d of the payload)", rec.Format, rec.Adaptive, len(vol.Data()), len(c.new))
	}
	if u := vol.Updates(); len(u) != 1 || u[0] != int64(len(c.new)) {
		t.Fatalf("volume updates %v, want one of %d bytes", u, len(c.new))
	}
	whole := rec.Adaptive
	if whole.Fetched > int64(len(c.img))/10 {
		t.Fatalf("fetched %d bytes of a %d-byte image", whole.Fetched, len(c.img))
	}

	vol.PowerCutAfterBytes(int64(len(c.new)) * 2 / 3)
	in := c.d.installer(t)
	var saved *Record
	in.Save = func(r Record) error {
		r.Header = bytes.Clone(r.Header)
		saved = &r
		return nil
	}
	if _, err := c.install(t, in, nil); !errors.Is(err, mtd.ErrPowerCut) {
		t.Fatalf("install with the power cut at byte %d of the update: %v", len(c.new)*2/3, err)
	}
	vol.PowerOn()
	if !vol.Marked() {
		t.Fatal("the cut update left the volume without its update marker")
	}
	if saved != nil && saved.Cursor.Offset != 0 {
		t.Fatalf("the cut install saved a resume point at %d: a UBI update has none inside it", saved.Cursor.Offset)
	}
	rec, err = c.install(t, c.d.installer(t), saved)
	if err != nil {
		t.Fatal(err)
	}
	if u := vol.Updates(); !bytes.Equal(vol.Data(), c.new) || len(u) != 3 || u[2] != int64(len(c.new)) {
		t.Fatalf("after the resumed install: %d bytes in the volume, marker %v, updates %v", len(vol.Data()), vol.Marked(), u)
	}
	ad := rec.Adaptive
	if rec.Format != FormatAdaptive || ad.Fallback != "" || ad.Planned > whole.Planned || ad.Fetched > whole.Fetched {
		t.Fatalf("the resumed install: format %s, adaptive %+v; from the start it planned %d bytes", rec.Format, ad, whole.Planned)
	}
	t.Logf("fetched %d bytes, then %d again after the cut (of a %d-byte image)", whole.Fetched, ad.Fetched, len(c.img))
}

// memCache is a FrameCache that outlives an install, as the agent's on disk outlives a
// power cut; asked counts the ranges asked of it.
type memCache struct {
	mu     sync.Mutex
	ranges map[[2]int64][]byte
	asked  int
}

func (m *memCache) Range(off, n int64) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked++
	b, ok := m.ranges[[2]int64{off, n}]
	return b, ok
}

func (m *memCache) Keep(off int64, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ranges == nil {
		m.ranges = map[[2]int64][]byte{}
	}
	m.ranges[[2]int64{off, int64(len(b))}] = bytes.Clone(b)
	return nil
}

func (m *memCache) kept() (n int64) {
	for _, b := range m.ranges {
		n += int64(len(b))
	}
	return n
}

// With a FrameCache, the install that starts over in a UBI volume after a power cut takes
// the ranges the cut attempt fetched from the cache and fetches only the rest (and the
// header); a range changed in the cache costs the fetch of its chunks, never a wrong byte.
func TestAdaptiveUBICache(t *testing.T) {
	for _, tamper := range []bool{false, true} {
		t.Run(fmt.Sprintf("tampered=%v", tamper), func(t *testing.T) {
			c := newAdaptiveCaseOf(t, func(old []byte) []byte {
				// Three changed regions, far apart: ranges of their own.
				out := bytes.Clone(old)
				for _, at := range []int{200 << 10, 1500 << 10, 2800 << 10} {
					copy(out[at:], testData(uint64(at), 48<<10))
				}
				return out
			}, nil)
			vol := mtdsim.NewVolume(4 << 20)
			c.onUBI(t, vol)
			whole, err := c.install(t, c.d.installer(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			cache := &memCache{}
			c.src.Adaptive.Cache = cache
			vol.PowerCutAfterBytes(int64(len(c.new)) * 3 / 4)
			if _, err := c.install(t, c.d.installer(t), nil); !errors.Is(err, mtd.ErrPowerCut) {
				t.Fatalf("install with the power cut: %v", err)
			}
			vol.PowerOn()
			kept := cache.kept()
			if kept == 0 {
				t.Fatal("the cut attempt kept nothing in the cache")
			}
			if tamper {
				for _, b := range cache.ranges {
					b[len(b)/2] ^= 0xff
				}
			}
			rec, err := c.install(t, c.d.installer(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(vol.Data(), c.new) {
				t.Fatal("the volume does not hold the new payload")
			}
			ad := rec.Adaptive
			store := ad.Fetched - c.index.HeaderSize
			if ad.Fallback != "" || ad.Cached != kept {
				t.Fatalf("adaptive %+v: %d bytes were kept in the cache", ad, kept)
			}
			if !tamper && store != whole.Adaptive.Planned-kept {
				t.Fatalf("fetched %d bytes of the store after the cut; planned %d, %d of them in the cache", store, whole.Adaptive.Planned, kept)
			}
			if tamper && store <= whole.Adaptive.Planned-kept {
				t.Fatalf("a tampered cache: fetched only %d bytes of the store (planned %d, %d in the cache)", store, whole.Adaptive.Planned, kept)
			}
			t.Logf("planned %d bytes of the store; after the cut %d from the cache, %d fetched", whole.Adaptive.Planned, ad.Cached, store)
		})
	}
}

// A target that keeps what was written (a file, a block device, flash) does not use the
// cache: its resume point and the scan of what it holds do better.
func TestAdaptiveCacheOnlyForUBI(t *testing.T) {
	c := newAdaptiveCase(t)
	cache := &memCache{}
	c.src.Adaptive.Cache = cache
	rec, err := c.install(t, c.d.installer(t), nil)
	if err != nil || !c.d.holds("rootfs-b", c.new) {
		t.Fatalf("install: %v", err)
	}
	if cache.asked != 0 || len(cache.ranges) != 0 || rec.Adaptive.Cached != 0 {
		t.Fatalf("an install into a file slot asked the cache %d times and kept %d ranges", cache.asked, len(cache.ranges))
	}
}
