package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/adaptivetest"
)

// adaptiveCase is an update from old to new: new's aduimg image, index and chunk store on
// a server, old in bank A's rootfs slot.
type adaptiveCase struct {
	d        *device
	srv      *server
	old, new []byte
	img      []byte
	index    *adaptive.Index
	store    []byte
	src      Source
}

// edit returns a copy of b with a few changes: bytes changed in place, some inserted, some
// removed.
func edit(b []byte) []byte {
	out := append([]byte(nil), b[:len(b)/4]...)
	out = append(out, []byte("a few inserted bytes")...)
	out = append(out, b[len(b)/4:len(b)/2]...)
	out = append(out, b[len(b)/2+5000:]...)
	for i := 3 * len(out) / 4; i < 3*len(out)/4+300; i++ {
		out[i] ^= 0x55
	}
	return out
}

func newAdaptiveCase(t *testing.T) *adaptiveCase {
	t.Helper()
	return newAdaptiveCaseOf(t, edit, nil)
}

// newAdaptiveCaseOf is newAdaptiveCase with the new payload made from the old by change and
// signed with mod's options.
func newAdaptiveCaseOf(t *testing.T, change func([]byte) []byte, mod func(*image.SignOptions)) *adaptiveCase {
	t.Helper()
	c := &adaptiveCase{d: newDevice(t), srv: newServer(t), old: testData(7, 3<<20)}
	if err := os.WriteFile(filepath.Join(c.d.dir, "rootfs-A"), c.old, 0o644); err != nil {
		t.Fatal(err)
	}
	c.publishWith(t, change(c.old), mod)
	return c
}

// publish makes p the case's new payload: its image, index and chunk store on the server.
func (c *adaptiveCase) publish(t *testing.T, p []byte) { c.publishWith(t, p, nil) }

// publishWith is publish with the image signed with mod's options.
func (c *adaptiveCase) publishWith(t *testing.T, p []byte, mod func(*image.SignOptions)) {
	t.Helper()
	c.new = p
	c.img = aduimgOf(t, c.new, "3.1", mod)
	_, kr := key(t)
	rd, err := image.NewReader(bytes.NewReader(c.img), image.VerifyOptions{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	var store bytes.Buffer
	if c.index, err = adaptive.Build(rd.Header(), rd, adaptive.DefaultParams, &store, nil); err != nil {
		t.Fatal(err)
	}
	c.store = store.Bytes()
	c.src = c.srv.put("rootfs.aduimg", c.img)
	c.srv.put("rootfs.aduchunks", c.store)
	c.src.Adaptive = c.adaptive()
}

// adaptive is the Source.Adaptive of the case: the index, the store's URL, bank A's slot.
func (c *adaptiveCase) adaptive() *Adaptive {
	f, err := os.Open(filepath.Join(c.d.dir, "rootfs-A"))
	if err != nil {
		panic(err)
	}
	return &Adaptive{Index: c.index, StoreURL: c.srv.URL + "/rootfs.aduchunks",
		Held: []Held{{Name: "rootfs-a", R: f, Size: int64(len(c.old))}}}
}

// install installs the case's source into rootfs-b.
func (c *adaptiveCase) install(t *testing.T, in *Installer, resume *Record) (Record, error) {
	t.Helper()
	return in.Install(context.Background(), c.src, c.d.target(t, "rootfs-b"), resume)
}

// An adaptive install fetches the chunks bank A lacks, in few requests, and puts the image's
// payload into the spare slot, read back.
func TestAdaptiveInstall(t *testing.T) {
	c := newAdaptiveCase(t)
	in := c.d.installer(t)
	m := &adaptiveMeter{}
	in.Meter = m
	rec, err := c.install(t, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	ad := rec.Adaptive
	if !rec.Done || rec.Format != FormatAdaptive || ad == nil || ad.Fallback != "" {
		t.Fatalf("record %+v, adaptive %+v", rec, ad)
	}
	if m.fetched.Load() != ad.Fetched || m.reused.Load() != ad.Reused {
		t.Errorf("the meter heard of %d bytes fetched and %d reused; the record says %d and %d",
			m.fetched.Load(), m.reused.Load(), ad.Fetched, ad.Reused)
	}
	if !c.d.holds("rootfs-b", c.new) {
		t.Fatal("the slot does not hold the new payload")
	}
	header := c.index.HeaderSize
	if ad.Fetched != ad.Planned+header || rec.Downloaded != ad.Fetched || ad.Reused+ad.Planned < int64(len(c.new))/2 {
		t.Errorf("fetched %d, planned %d (+ %d of header), reused %d, downloaded %d", ad.Fetched, ad.Planned, header, ad.Reused, rec.Downloaded)
	}
	if ad.Fetched > int64(len(c.img))/10 || ad.Requests > 6 {
		t.Errorf("fetched %d bytes of a %d-byte image in %d requests", ad.Fetched, len(c.img), ad.Requests)
	}
	t.Logf("fetched %d bytes in %d requests, reused %d; the image is %d bytes", ad.Fetched, ad.Requests, ad.Reused, len(c.img))
}

// adaptiveMeter counts what an adaptive install tells its meter.
type adaptiveMeter struct{ fetched, reused atomic.Int64 }

func (m *adaptiveMeter) Stage(string, int64) {}
func (m *adaptiveMeter) Add(int64)           {}
func (m *adaptiveMeter) Fetched(n int64)     { m.fetched.Add(n) }
func (m *adaptiveMeter) Reused(n int64)      { m.reused.Add(n) }

// The assembly reads what it takes from bank A once (no second pass to check it: the aduimg
// chunks' checks cover it), chunks that are neighbours in bank A as in the payload in one
// read; here, with chunks of bank A removed, not all of them are.
func TestAdaptiveReadsHeldOnce(t *testing.T) {
	removeChunks := func(old []byte) []byte {
		var cuts []int
		adaptive.DefaultParams.Split(bytes.NewReader(old), func(off int64, _ []byte) error {
			cuts = append(cuts, int(off))
			return nil
		})
		return edit(append(append([]byte(nil), old[:cuts[3]]...), old[cuts[6]:]...))
	}
	c := newAdaptiveCaseOf(t, removeChunks, func(o *image.SignOptions) { o.ChunkSize = 1 << 20 })
	held := &countingReaderAt{r: bytes.NewReader(c.old)}
	c.src.Adaptive.Held = []Held{{Name: "rootfs-a", R: held, Size: int64(len(c.old))}}
	in := c.d.installer(t)
	in.Meter = atWrite(func() { held.reads.Store(0); held.bytes.Store(0) })
	rec, err := c.install(t, in, nil)
	if err != nil || rec.Adaptive.Fallback != "" {
		t.Fatalf("install: %v, %+v", err, rec.Adaptive)
	}
	if n := held.bytes.Load(); n != rec.Adaptive.Reused {
		t.Errorf("the assembly read %d bytes of bank A, it took %d", n, rec.Adaptive.Reused)
	}
	entries := len(c.index.Entries) - len(c.lacking(t))
	if n := held.reads.Load(); n*4 > int64(entries) {
		t.Errorf("%d reads of bank A for %d chunks", n, entries)
	}
	t.Logf("%d bytes of bank A in %d reads, %d chunks", held.bytes.Load(), held.reads.Load(), entries)
}

// countingReaderAt counts the reads of r and their bytes.
type countingReaderAt struct {
	r            io.ReaderAt
	reads, bytes atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	c.bytes.Add(int64(len(p)))
	return c.r.ReadAt(p, off)
}

// A dry run plans what an install would fetch, and fetches only the header.
func TestAdaptiveDryRun(t *testing.T) {
	c := newAdaptiveCase(t)
	in := c.d.installer(t)
	in.DryRun = true
	rec, err := c.install(t, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	real, err := c.install(t, c.d.installer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Adaptive == nil || rec.Adaptive.Planned != real.Adaptive.Planned || rec.Adaptive.Fetched != c.index.HeaderSize || c.d.holds("rootfs-b", c.new) != true {
		t.Fatalf("dry run %+v, install %+v", rec.Adaptive, real.Adaptive)
	}
}

// Each thing that stops an adaptive install falls back to the full download, which
// installs the image, and the record says why.
func TestAdaptiveFallback(t *testing.T) {
	for _, tc := range []struct {
		name, why string
		mod       func(c *adaptiveCase)
	}{
		{"server ignores Range", "ignores Range", func(c *adaptiveCase) {
			c.srv.Config.Handler = ignoreRange(c.srv.Config.Handler)
		}},
		{"index of another image", "index of another image", func(c *adaptiveCase) {
			other := *c.index
			other.HeaderSHA256[0] ^= 1
			c.src.Adaptive.Index = &other
		}},
		{"index of another payload", "index of another image", func(c *adaptiveCase) {
			other := *c.index
			other.PayloadSHA256[0] ^= 1
			c.src.Adaptive.Index = &other
		}},
		{"held slot unreadable", "scanning rootfs-a", func(c *adaptiveCase) {
			c.src.Adaptive.Held[0].R = failingReaderAt{}
		}},
		{"store missing", "404", func(c *adaptiveCase) { c.src.Adaptive.StoreURL = c.srv.URL + "/nothing" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newAdaptiveCase(t)
			tc.mod(c)
			rec, err := c.install(t, c.d.installer(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Format != FormatAduimg || rec.Adaptive == nil || !strings.Contains(rec.Adaptive.Fallback, tc.why) || !c.d.holds("rootfs-b", c.new) {
				t.Fatalf("format %s, adaptive %+v; want a fallback for %q", rec.Format, rec.Adaptive, tc.why)
			}
		})
	}
}

// A chunk that does not match the index, or served from another offset of the store, is
// refused before its aduimg chunk reaches the slot, and the fallback names the chunk store's
// chunk, not only the aduimg chunk.
func TestAdaptiveRefusesBadChunks(t *testing.T) {
	for _, tc := range []struct {
		name, why string
		store     func(c *adaptiveCase, e adaptive.Entry) http.HandlerFunc
		whole     bool // aduimg chunks of 1 MiB: the first fetched chunk lies whole in one, stored
	}{
		{"tampered stored frame, whole in its aduimg chunk", "adaptive: chunk hash mismatch", func(c *adaptiveCase, e adaptive.Entry) http.HandlerFunc {
			b := append([]byte(nil), c.store...)
			b[e.Frame+int64(e.FrameN)/2] ^= 1
			return serveBytes(b)
		}, true},
		{"tampered frame", "adaptive: chunk hash mismatch", func(c *adaptiveCase, e adaptive.Entry) http.HandlerFunc {
			b := append([]byte(nil), c.store...)
			b[e.Frame+int64(e.FrameN)/2] ^= 1
			return serveBytes(b)
		}, false},
		{"bytes of another offset under the asked range", "adaptive: chunk hash mismatch", func(c *adaptiveCase, e adaptive.Entry) http.HandlerFunc {
			return serveBytes(append(append(append([]byte(nil), c.store[:e.Frame]...), c.store[e.Frame+1:]...), 0))
		}, false},
		{"another range", "Content-Range", func(c *adaptiveCase, e adaptive.Entry) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				var a, b int64
				fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b)
				r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", a+1, b))
				serveBytes(c.store)(w, r)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newAdaptiveCase(t)
			if tc.whole {
				c = newAdaptiveCaseOf(t, edit, func(o *image.SignOptions) { o.ChunkSize = 1 << 20 })
			}
			before := c.fillSpare(t)
			e := c.firstFetched(t)
			if tc.whole && (e.Compressed() || e.Offset>>20 != (e.Offset+int64(e.Size)-1)>>20) {
				t.Fatalf("the first fetched chunk (%+v) is compressed or across an aduimg chunk: the case tests nothing", e)
			}
			store := tc.store(c, e)
			c.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/rootfs.aduchunks":
					store(w, r)
				case r.Header.Get("Range") == "":
					http.NotFound(w, r) // no full download: the refusal is the verdict
				default:
					serveBytes(c.img)(w, r)
				}
			})
			rec, err := c.install(t, c.d.installer(t), nil)
			if !errors.Is(err, ErrDownload) || rec.Adaptive == nil || !strings.Contains(rec.Adaptive.Fallback, tc.why) {
				t.Fatalf("install: %v, %+v; want a refusal for %q, and the fallback's download to fail", err, rec.Adaptive, tc.why)
			}
			c.unwritten(t, before, e.Offset)
		})
	}
}

// fillSpare fills the spare slot with a pattern, returned, that no payload byte is.
func (c *adaptiveCase) fillSpare(t *testing.T) []byte {
	t.Helper()
	before := bytes.Repeat([]byte{0xA5}, len(c.new))
	if err := os.WriteFile(filepath.Join(c.d.dir, "rootfs-B"), before, 0o644); err != nil {
		t.Fatal(err)
	}
	return before
}

// unwritten fails t unless the spare slot's aduimg chunk (32 KiB) holding payload offset off
// still holds what it held before the install.
func (c *adaptiveCase) unwritten(t *testing.T, before []byte, off int64) {
	t.Helper()
	slot := c.d.file("rootfs-b")
	cs := int64(32 << 10)
	from := off / cs * cs
	if !bytes.Equal(slot[from:from+cs], before[from:from+cs]) {
		t.Fatalf("the aduimg chunk at %d, holding payload offset %d, was written", from, off)
	}
}

// serveBytes serves b with Range support.
func serveBytes(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f", time.Unix(1.7e9, 0), bytes.NewReader(b))
	}
}

// ignoreRange serves every request whole.
func ignoreRange(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Range")
		h.ServeHTTP(w, r)
	})
}

type failingReaderAt struct{}

func (failingReaderAt) ReadAt([]byte, int64) (int, error) { return 0, errors.New("unreadable") }

// firstFetched is the first entry the case's install fetches.
func (c *adaptiveCase) firstFetched(t *testing.T) adaptive.Entry {
	fetched := c.lacking(t)
	if len(fetched) == 0 {
		t.Fatal("nothing to fetch")
	}
	return fetched[0]
}

// lacking is the entries bank A lacks: those the case's install fetches.
func (c *adaptiveCase) lacking(t *testing.T) []adaptive.Entry {
	have := map[adaptive.Sum]adaptive.Location{}
	held := bytes.NewReader(c.old)
	if err := c.index.Params.Scan(held, 0, 0, int64(len(c.old)), 1, c.index.Wanted(), have); err != nil {
		t.Fatal(err)
	}
	if _, err := c.index.Extend([]adaptive.Source{{R: held, End: int64(len(c.old))}}, have); err != nil {
		t.Fatal(err)
	}
	var fetched []adaptive.Entry
	for _, e := range c.index.Entries {
		if _, ok := have[e.Sum]; !ok {
			fetched = append(fetched, e)
		}
	}
	return fetched
}

// A power cut after every resume point: the install resumes from the last one saved, puts
// the payload into the slot, and the resumed attempt plans to fetch no more than the cut one
// did (what the slot holds up to the cursor, and what was written after it, is not fetched
// again); once the cursor passed fetched chunks, less.
func TestAdaptiveResumeAfterPowerCut(t *testing.T) {
	c := newAdaptiveCase(t)
	fresh := testData(99, 600<<10)
	c.publish(t, slices.Concat(c.old[:1<<20], fresh, c.old[1<<20:]))
	whole, err := c.install(t, c.d.installer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	cut := errors.New("power cut")
	for k := 1; ; k++ {
		os.Remove(filepath.Join(c.d.dir, "rootfs-B"))
		in := c.d.installer(t)
		var saved *Record
		n := 0
		in.Save = func(r Record) error {
			if n++; n > k {
				return cut
			}
			r.Header = append([]byte(nil), r.Header...)
			saved = &r
			return nil
		}
		_, err := c.install(t, in, nil)
		if err == nil {
			if k == 1 {
				t.Fatal("no resume point")
			}
			return
		}
		if !errors.Is(err, cut) {
			t.Fatalf("cut after %d saves: %v", k, err)
		}
		rec, err := c.install(t, c.d.installer(t), saved)
		if err != nil || rec.Format != FormatAdaptive || !c.d.holds("rootfs-b", c.new) {
			t.Fatalf("resumed after %d saves (cursor %+v): %v, format %s", k, saved.Cursor, err, rec.Format)
		}
		if rec.Adaptive.Planned > whole.Adaptive.Planned ||
			saved.Cursor.Offset > (1<<20)+int64(len(fresh)) && rec.Adaptive.Planned >= whole.Adaptive.Planned {
			t.Fatalf("resumed at %d: plans %d bytes, an install from the start %d", saved.Cursor.Offset, rec.Adaptive.Planned, whole.Adaptive.Planned)
		}
	}
}

// An earlier attempt that left no resume record (its journal lost, or the deployment
// retried after it failed) counts: the aduimg chunks at the spare slot's start that match the
// signed header are taken from there, and what they hold is not fetched again. A slot whose
// first chunk does not match (another image) gives nothing.
func TestAdaptiveEarlierAttemptWithoutRecord(t *testing.T) {
	c := newAdaptiveCase(t)
	fresh := testData(98, 600<<10)
	c.publish(t, slices.Concat(c.old[:1<<20], fresh, c.old[1<<20:]))
	whole, err := c.install(t, c.d.installer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	spare := filepath.Join(c.d.dir, "rootfs-B")
	for _, tc := range []struct {
		name    string
		written int64 // bytes of the new payload in the slot
		other   bool  // the slot's first chunk is another image's
	}{
		{"past the changed bytes", 2 << 20, false},
		{"before them", 512 << 10, false},
		{"another image first", 2 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slot := slices.Concat(c.new[:tc.written], bytes.Repeat([]byte{0xee}, len(c.new)-int(tc.written)))
			if tc.other {
				slot[100] ^= 1
			}
			if err := os.WriteFile(spare, slot, 0o644); err != nil {
				t.Fatal(err)
			}
			rec, err := c.install(t, c.d.installer(t), nil)
			if err != nil || !c.d.holds("rootfs-b", c.new) {
				t.Fatalf("install: %v", err)
			}
			ad := rec.Adaptive
			switch {
			case tc.other && ad.Planned != whole.Adaptive.Planned:
				t.Fatalf("a slot of another image: planned %d bytes, from an empty slot %d", ad.Planned, whole.Adaptive.Planned)
			case !tc.other && tc.written > 1<<20+int64(len(fresh)) && ad.Planned != 0:
				t.Fatalf("the earlier attempt wrote the changed bytes; planned %d bytes (from an empty slot %d)", ad.Planned, whole.Adaptive.Planned)
			case !tc.other && tc.written < 1<<20 && ad.Planned != whole.Adaptive.Planned:
				t.Fatalf("the earlier attempt stopped before the changed bytes; planned %d bytes, from an empty slot %d", ad.Planned, whole.Adaptive.Planned)
			}
			t.Logf("planned %d bytes (from an empty slot %d), reused %d", ad.Planned, whole.Adaptive.Planned, ad.Reused)
		})
	}
}

// A forged index (its chunks those of another payload, its header and payload hashes this
// image's) is refused at the first aduimg chunk that does not match the signed header,
// before that chunk is written.
func TestAdaptiveRefusesForgedIndex(t *testing.T) {
	c := newAdaptiveCase(t)
	forged := append([]byte(nil), c.new...)
	at := len(forged) / 3
	forged[at] ^= 0xFF
	var store bytes.Buffer
	x, err := adaptive.Build(signedHeader(t, forged), bytes.NewReader(forged), adaptive.DefaultParams, &store, nil)
	if err != nil {
		t.Fatal(err)
	}
	x.HeaderSHA256, x.HeaderSize, x.PayloadSHA256 = c.index.HeaderSHA256, c.index.HeaderSize, c.index.PayloadSHA256
	c.srv.put("rootfs.aduchunks", store.Bytes())
	c.src.Adaptive.Index = x
	before := bytes.Repeat([]byte{0xA5}, len(c.new))
	if err := os.WriteFile(filepath.Join(c.d.dir, "rootfs-B"), before, 0o644); err != nil {
		t.Fatal(err)
	}
	c.srv.Config.Handler = rangeOnly(c.srv.Config.Handler)
	rec, err := c.install(t, c.d.installer(t), nil)
	if !errors.Is(err, ErrDownload) || rec.Adaptive == nil || !strings.Contains(rec.Adaptive.Fallback, "does not match the header") {
		t.Fatalf("install: %v, %+v; want the forged index refused", err, rec.Adaptive)
	}
	cs := 32 << 10
	from := at / cs * cs
	if slot := c.d.file("rootfs-b"); !bytes.Equal(slot[from:from+cs], before[from:from+cs]) {
		t.Fatalf("the aduimg chunk at %d, which the forged index changes, was written", from)
	}
}

// rangeOnly refuses whole-file requests (no fallback download: the refusal is the verdict).
func rangeOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// signedHeader is the header of raw signed as the tests sign.
func signedHeader(t *testing.T, raw []byte) *image.Header {
	_, kr := key(t)
	rd, err := image.NewReader(bytes.NewReader(aduimgOf(t, raw, "x", nil)), image.VerifyOptions{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	return rd.Header()
}

// heldChunk is a chunk of old that the index names once (no other entry reuses it): where it
// lies in old, and its entry.
func (c *adaptiveCase) heldChunk(t *testing.T) (int64, adaptive.Entry) {
	t.Helper()
	count := map[adaptive.Sum]int{}
	for _, e := range c.index.Entries {
		count[e.Sum]++
	}
	var at int64 = -1
	var entry adaptive.Entry
	c.index.Params.Split(bytes.NewReader(c.old), func(off int64, b []byte) error {
		d := adaptive.SumOf(b)
		if at < 0 && count[d] == 1 {
			for _, e := range c.index.Entries {
				if e.Sum == d {
					at, entry = off, e
				}
			}
		}
		return nil
	})
	if at < 0 {
		t.Fatal("no chunk of the old payload that the index names once")
	}
	return at, entry
}

// atWrite calls fn when the install starts writing: after the scan, before the assembly.
type atWrite func()

func (f atWrite) Stage(name string, _ int64) {
	if name == StageWrite {
		f()
	}
}
func (atWrite) Add(int64) {}

// A chunk of bank A that no longer matches when the assembly takes it (changed since the
// scan) fails its aduimg chunk's check; then the chunks of bank A in it are checked against
// the index, the changed one is fetched alone, checked, and the install goes on.
func TestAdaptiveRefetchesChangedHeldChunk(t *testing.T) {
	c := newAdaptiveCase(t)
	held := append([]byte(nil), c.old...)
	c.src.Adaptive.Held = []Held{{Name: "rootfs-a", R: bytes.NewReader(held), Size: int64(len(held))}}
	at, e := c.heldChunk(t)
	in := c.d.installer(t)
	in.Meter = atWrite(func() { held[at+int64(e.Size)/2] ^= 1 })
	rec, err := c.install(t, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	ad := rec.Adaptive
	if rec.Format != FormatAdaptive || ad.Fallback != "" || !c.d.holds("rootfs-b", c.new) {
		t.Fatalf("format %s, adaptive %+v", rec.Format, ad)
	}
	if want := c.index.HeaderSize + ad.Planned + int64(e.FrameN); ad.Fetched != want {
		t.Fatalf("fetched %d bytes; want the header, the plan and the changed chunk's frame: %d", ad.Fetched, want)
	}
}

// Bytes the device held that changed since the scan never reach the slot: the aduimg chunk
// holding them does not match the signed header, and when their chunk cannot be fetched
// alone either, the install falls back (here to a download that fails) with that aduimg
// chunk unwritten.
func TestAdaptiveChangedHeldChunkNotWritten(t *testing.T) {
	c := newAdaptiveCase(t)
	before := c.fillSpare(t)
	held := append([]byte(nil), c.old...)
	c.src.Adaptive.Held = []Held{{Name: "rootfs-a", R: bytes.NewReader(held), Size: int64(len(held))}}
	at, e := c.heldChunk(t)
	alone := fmt.Sprintf("bytes=%d-%d", e.Frame, e.Frame+int64(e.FrameN)-1)
	c.srv.Config.Handler = rangeOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == alone {
			http.NotFound(w, r)
			return
		}
		data := c.img
		if r.URL.Path == "/rootfs.aduchunks" {
			data = c.store
		}
		serveBytes(data)(w, r)
	}))
	in := c.d.installer(t)
	in.Meter = atWrite(func() { held[at+int64(e.Size)/2] ^= 1 })
	rec, err := c.install(t, in, nil)
	if !errors.Is(err, ErrDownload) || rec.Adaptive == nil || !strings.Contains(rec.Adaptive.Fallback, "404") {
		t.Fatalf("install: %v, %+v; want the chunk's fetch refused, and the fallback's download to fail", err, rec.Adaptive)
	}
	c.unwritten(t, before, e.Offset+int64(e.Size)/2)
}

// A held chunk that cannot be read when the assembly takes it (read before by the scan: the
// device is failing or losing power) ends the attempt with a read error: no fallback fetches
// what the next attempt's scan may find.
func TestAdaptiveHeldReadFailureEndsAttempt(t *testing.T) {
	c := newAdaptiveCase(t)
	var gone atomic.Bool
	c.src.Adaptive.Held = []Held{{Name: "rootfs-a", R: dying{bytes.NewReader(c.old), &gone}, Size: int64(len(c.old))}}
	c.srv.Config.Handler = rangeOnly(c.srv.Config.Handler)
	in := c.d.installer(t)
	in.Meter = atWrite(func() { gone.Store(true) })
	rec, err := c.install(t, in, nil)
	if !errors.Is(err, ErrRead) || rec.Adaptive == nil || rec.Adaptive.Fallback != "" {
		t.Fatalf("install: %v, %+v; want a read error and no fallback", err, rec.Adaptive)
	}
	if rec.Adaptive.Fetched > c.index.HeaderSize+rec.Adaptive.Planned {
		t.Fatalf("fetched %d bytes; the header and the plan are %d", rec.Adaptive.Fetched, c.index.HeaderSize+rec.Adaptive.Planned)
	}
}

// dying reads r until gone is set, then fails.
type dying struct {
	r    io.ReaderAt
	gone *atomic.Bool
}

func (d dying) ReadAt(p []byte, off int64) (int, error) {
	if d.gone.Load() {
		return 0, errors.New("no power")
	}
	return d.r.ReadAt(p, off)
}

// withBase rebuilds the case's index and store with delta frames against the old payload.
func (c *adaptiveCase) withBase(t *testing.T) {
	t.Helper()
	_, kr := key(t)
	var store bytes.Buffer
	x, err := adaptive.IndexImage(bytes.NewReader(c.img), kr, adaptive.DefaultParams, &store, &adaptive.Base{R: bytes.NewReader(c.old), Size: int64(len(c.old))})
	if err != nil {
		t.Fatal(err)
	}
	c.index, c.store = x, store.Bytes()
	c.srv.put("rootfs.aduchunks", c.store)
	c.src.Adaptive.Index = x
}

// With delta frames in the store, a chunk that changed a little is fetched as its delta
// against the chunks of bank A most like it: fewer bytes than its own frame, the payload the
// same. A base chunk that no longer matches when it is taken gets the chunks whose delta
// frames it is a base of their own frames.
func TestAdaptiveDeltaFrames(t *testing.T) {
	c := newAdaptiveCase(t)
	plain, rec := c.installWithDeltas(t)
	if rec.Adaptive.Fetched >= plain.Adaptive.Fetched {
		t.Fatalf("fetched %d bytes with delta frames, %d without", rec.Adaptive.Fetched, plain.Adaptive.Fetched)
	}

	base, refetch := c.changedBase(t)
	held := append([]byte(nil), c.old...)
	c.src.Adaptive.Held = []Held{{Name: "rootfs-a", R: bytes.NewReader(held), Size: int64(len(held))}}
	at := -1 // where bank A holds the base chunk first
	c.index.Params.Split(bytes.NewReader(c.old), func(off int64, b []byte) error {
		if at < 0 && adaptive.SumOf(b) == base {
			at = int(off)
		}
		return nil
	})
	in := c.d.installer(t)
	in.Meter = atWrite(func() { held[at] ^= 1 })
	os.Remove(filepath.Join(c.d.dir, "rootfs-B"))
	again, err := c.install(t, in, nil)
	if err != nil || again.Adaptive.Fallback != "" || !c.d.holds("rootfs-b", c.new) {
		t.Fatalf("install with a changed base: %v, %+v", err, again.Adaptive)
	}
	if want := rec.Adaptive.Fetched + refetch; again.Adaptive.Fetched != want {
		t.Fatalf("fetched %d bytes with a changed base; want %d (the own frames of the chunks whose delta it is a base of, besides)", again.Adaptive.Fetched, want)
	}
}

// changedBase returns a base chunk of a delta frame that is not a chunk of the new payload
// (the old version of a changed chunk), and what the install fetches besides when it no
// longer matches: the own frames of the chunks whose delta frames it is a base of.
func (c *adaptiveCase) changedBase(t *testing.T) (adaptive.Sum, int64) {
	t.Helper()
	inNew := map[adaptive.Sum]bool{}
	for _, e := range c.index.Entries {
		inNew[e.Sum] = true
	}
	var base adaptive.Sum
	var refetch int64
	for _, e := range c.index.Entries {
		if e.Delta == nil {
			continue
		}
		for _, bc := range e.Delta.Bases {
			if refetch == 0 && !inNew[bc.Sum] {
				base = bc.Sum
			}
			if bc.Sum == base && !inNew[base] {
				refetch += int64(e.FrameN)
			}
		}
	}
	if refetch == 0 {
		t.Fatal("no delta frame against a chunk the new payload lacks")
	}
	return base, refetch
}

// A region of bank A that moved and changed (a new version of a file an ext4 image writes
// elsewhere) is fetched as delta frames against its old chunks, wherever they lie in the
// slot, and decoded into the image's payload.
func TestAdaptiveDeltaAgainstMovedChunks(t *testing.T) {
	c := newAdaptiveCaseOf(t, func(old []byte) []byte { p, _ := adaptivetest.Moved(old); return p }, nil)
	plain, rec := c.installWithDeltas(t)
	if rec.Adaptive.Fetched > plain.Adaptive.Fetched-adaptivetest.MovedLen/2 {
		t.Fatalf("fetched %d bytes with delta frames, %d without: the moved region's deltas were not fetched", rec.Adaptive.Fetched, plain.Adaptive.Fetched)
	}
}

// installWithDeltas installs the case without delta frames (plain), then with them (rec),
// into an empty spare slot (what the spare holds is scanned too), checking the payload.
func (c *adaptiveCase) installWithDeltas(t *testing.T) (plain, rec Record) {
	t.Helper()
	plain, err := c.install(t, c.d.installer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.withBase(t)
	os.Remove(filepath.Join(c.d.dir, "rootfs-B"))
	rec, err = c.install(t, c.d.installer(t), nil)
	if err != nil || rec.Format != FormatAdaptive || rec.Adaptive.Fallback != "" || !c.d.holds("rootfs-b", c.new) {
		t.Fatalf("install: %v, %+v", err, rec.Adaptive)
	}
	t.Logf("fetched %d bytes with delta frames, %d without", rec.Adaptive.Fetched, plain.Adaptive.Fetched)
	return plain, rec
}

// The chunk store's ranges are fetched up to rangesInFlight at once (a link's round trip is
// paid once for them) and assembled in order, whichever comes back first: here the first
// range is answered only after the others were asked for, and no more are asked for while
// the assembly waits for it.
func TestAdaptiveFetchesRangesAtOnce(t *testing.T) {
	c := newAdaptiveCaseOf(t, func(old []byte) []byte {
		p := bytes.Clone(old) // changes far apart: one range each
		for i := 50 << 10; i < len(p); i += 300 << 10 {
			p[i] ^= 0xFF
		}
		return p
	}, nil)
	firstRange := fmt.Sprintf("bytes=%d-", c.firstFetched(t).Frame) // the plan's first
	var mu sync.Mutex
	asked, beforeFirst := 0, 0 // ranges asked for; of them, before the first was answered
	others := make(chan struct{}, 64)
	c.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/rootfs.aduchunks" {
			serveBytes(c.img)(w, r)
			return
		}
		mu.Lock()
		asked++
		first := strings.HasPrefix(r.Header.Get("Range"), firstRange)
		mu.Unlock()
		if !first {
			others <- struct{}{}
			serveBytes(c.store)(w, r)
			return
		}
		// Until the others are asked for (a sequential fetch goes on after 5 s), and a
		// moment longer, to see that no more are.
		wait, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		for range rangesInFlight - 1 {
			select {
			case <-others:
			case <-wait.Done():
			}
		}
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		beforeFirst = asked - 1
		mu.Unlock()
		serveBytes(c.store)(w, r)
	})
	rec, err := c.install(t, c.d.installer(t), nil)
	if err != nil || rec.Adaptive.Fallback != "" || !c.d.holds("rootfs-b", c.new) {
		t.Fatalf("install: %v, %+v", err, rec.Adaptive)
	}
	if asked < rangesInFlight+1 {
		t.Fatalf("%d ranges asked for: the case does not test %d at once", asked, rangesInFlight)
	}
	if beforeFirst != rangesInFlight-1 {
		t.Fatalf("%d more ranges were asked for before the first was answered, want %d", beforeFirst, rangesInFlight-1)
	}
}

// rangeReaderAt records the byte ranges read from r.
type rangeReaderAt struct {
	r      io.ReaderAt
	mu     sync.Mutex
	ranges [][2]int64
}

func (c *rangeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	c.ranges = append(c.ranges, [2]int64{off, off + int64(len(p))})
	c.mu.Unlock()
	return c.r.ReadAt(p, off)
}

// With an index built against what bank A holds, the install takes the chunks where the
// index's base map puts them, each checked by its quick hash, and reads nothing else of bank
// A (no cut of it all; here not its tail past the payload it holds): it fetches what the cut
// would have it fetch, or less. When a place no
// longer holds its chunk, bank A is cut as without a map.
func TestAdaptiveBaseMap(t *testing.T) {
	c := newAdaptiveCase(t)
	c.withBase(t)
	mapped := c.index
	unmapped := *mapped
	unmapped.Base = nil
	sizes := adaptivetest.Sizes(mapped)
	inPlace := make([]bool, len(c.old)+512<<10)
	for s, off := range mapped.Base.At {
		for i := off; i < off+int64(sizes[s]); i++ {
			inPlace[i] = true
		}
	}

	install := func(x *adaptive.Index, held []byte) (*rangeReaderAt, Record) {
		t.Helper()
		r := &rangeReaderAt{r: bytes.NewReader(held)}
		c.src.Adaptive.Index = x
		c.src.Adaptive.Held = []Held{{Name: "rootfs-a", R: r, Size: int64(len(held))}}
		os.Remove(filepath.Join(c.d.dir, "rootfs-B"))
		rec, err := c.install(t, c.d.installer(t), nil)
		if err != nil || rec.Adaptive.Fallback != "" || !c.d.holds("rootfs-b", c.new) {
			t.Fatalf("install: %v, %+v", err, rec.Adaptive)
		}
		if rec.Adaptive.Fetched != rec.Adaptive.Planned+mapped.HeaderSize {
			t.Fatalf("fetched %d, planned %d", rec.Adaptive.Fetched, rec.Adaptive.Planned)
		}
		return r, rec
	}

	// the slot is longer than the payload it holds: its tail is stale bytes, in no place
	slot := append(bytes.Clone(c.old), testData(8, 512<<10)...)
	r, rec := install(mapped, slot)
	if rec.Adaptive.Found != FoundByBaseMap {
		t.Fatalf("found %q, want %q", rec.Adaptive.Found, FoundByBaseMap)
	}
	for _, rg := range r.ranges {
		for i := rg[0]; i < rg[1]; i++ {
			if !inPlace[i] {
				t.Fatalf("read bank A at %d-%d: byte %d is in no place of the base map", rg[0], rg[1], i)
			}
		}
	}
	_, cut := install(&unmapped, slot)
	if rec.Adaptive.Planned > cut.Adaptive.Planned {
		t.Fatalf("with the base map the plan fetches %d bytes, with the cut %d", rec.Adaptive.Planned, cut.Adaptive.Planned)
	}

	var s adaptive.Sum
	for _, e := range mapped.Entries {
		if _, ok := mapped.Base.At[e.Sum]; ok && e.Size > 1000 {
			s = e.Sum
			break
		}
	}
	held := bytes.Clone(c.old)
	held[mapped.Base.At[s]+500] ^= 1
	r, rec = install(mapped, held)
	_, cut = install(&unmapped, held)
	if rec.Adaptive.Found != FoundByCut || cut.Adaptive.Found != FoundByCut {
		t.Fatalf("a place changed: found %q and %q, want %q", rec.Adaptive.Found, cut.Adaptive.Found, FoundByCut)
	}
	if rec.Adaptive.Planned != cut.Adaptive.Planned || rec.Adaptive.Planned <= 0 {
		t.Fatalf("a place changed: the plan fetches %d bytes, the cut's %d", rec.Adaptive.Planned, cut.Adaptive.Planned)
	}
	t.Logf("planned %d bytes with the map, %d with the cut; %d reads of bank A with the map", rec.Adaptive.Planned, cut.Adaptive.Planned, len(r.ranges))
}
