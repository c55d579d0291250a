package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/slots"
)

// FormatAdaptive is an aduimg image assembled from chunks the device holds and chunks fetched
// from its chunk store (Source.Adaptive).
const FormatAdaptive = "adaptive"

// ErrAdaptive: the adaptive install cannot go on (the server ignores Range, the index does
// not fit the image, a chunk does not match, what the device holds cannot be read); Install
// falls back to the full download and says why in Record.Adaptive.Fallback.
var ErrAdaptive = errkind.New(errkind.Cause, "install: adaptive download failed")

// Adaptive is what an adaptive install needs besides the image's own URL, size and SHA-256
// (Source), which it falls back to.
type Adaptive struct {
	// Index is the image's adaptive index, which the caller checked against the update
	// manifest's SHA-256 of the index file.
	Index *adaptive.Index
	// StoreURL is the chunk store's URL (HTTP Range requests).
	StoreURL string
	// Held is what the device holds that may share chunks with the image (the running bank's
	// slot of the image's class, opened read-only); the target slot's current content is
	// scanned too, unless it is a UBI volume (whose update erases it first).
	Held []Held
	// Cache keeps the chunk store's ranges fetched for a target that cannot continue an
	// install after a power cut (a UBI volume, whose update starts over), so that the next
	// attempt takes them from it instead of fetching them again (nil: none). What it returns
	// is checked as fetched bytes are: a wrong byte from it costs a fetch, never the slot.
	Cache FrameCache
}

// FrameCache keeps ranges of a chunk store across power cuts (Adaptive.Cache).
type FrameCache interface {
	// Range returns the n bytes at off of the store, when Keep kept exactly that range.
	Range(off, n int64) ([]byte, bool)
	// Keep keeps the bytes b fetched at off; it may decline (full), and an error only
	// means they are not kept.
	Keep(off int64, b []byte) error
}

// Held is one thing the device holds: Size bytes of R.
type Held struct {
	Name string
	R    io.ReaderAt
	Size int64
}

// AdaptiveRecord is what an adaptive install did, all attempts together.
type AdaptiveRecord struct {
	Fetched  int64 `json:"fetched"`  // bytes fetched from the chunk store (and the header)
	Reused   int64 `json:"reused"`   // payload bytes taken from what the device holds
	Requests int   `json:"requests"` // HTTP requests
	// Planned is how many bytes the last plan fetches (a dry run: what an install would).
	Planned int64 `json:"planned"`
	// Cached is how many bytes of the chunk store were taken from Adaptive.Cache instead of
	// fetched, and CacheError the first error keeping a range in it.
	Cached     int64  `json:"cached,omitempty"`
	CacheError string `json:"cache_error,omitempty"`
	// Found is how the last attempt found the chunks the device holds: FoundByBaseMap (the
	// running bank held the payload the index was built against) or FoundByCut.
	Found    string `json:"found,omitempty"`
	Fallback string `json:"fallback,omitempty"` // why the install fell back to the full download
}

// How an adaptive install found the chunks the device holds (AdaptiveRecord.Found).
const (
	FoundByBaseMap = "base map" // where the index's base map puts them, each checked by its quick hash
	FoundByCut     = "cut"      // by cutting what the device holds (and looking beside what that found)
)

// Limits of the requests: about 1 MiB each (what ADU's CDN serves best), never more than
// 100 MB, and a gap of up to 4 KiB between two needed frames fetched rather than split; up
// to rangesInFlight at once (a link's round trip is paid once for them, not per request).
const (
	rangeTarget    = 1 << 20
	rangeGap       = 4 << 10
	rangesInFlight = 3
)

// installAdaptive runs an adaptive install, and the full one when it cannot go on.
func (in *Installer) installAdaptive(ctx context.Context, src Source, target *slots.Target, resume *Record) (Record, error) {
	if resume != nil && resume.Format != FormatAdaptive {
		full := src
		full.Adaptive = nil
		return in.Install(ctx, full, target, resume)
	}
	rec, err := in.install(ctx, src, target, resume)
	if err == nil || !errors.Is(err, ErrAdaptive) || ctx.Err() != nil {
		return rec, err
	}
	ad := rec.Adaptive
	if ad == nil {
		ad = &AdaptiveRecord{}
	}
	ad.Fallback = err.Error()
	full := src
	full.Adaptive = nil
	frec, ferr := in.install(ctx, full, target, nil)
	frec.Adaptive = ad
	frec.Downloaded += rec.Downloaded
	return frec, ferr
}

// assembly is the input of an adaptive install: the payload, put together chunk by chunk
// from what the device holds and ranges of the chunk store, each aduimg chunk checked
// against the signed header before it is handed on, and its chunks against the index when
// it does not match.
type assembly struct {
	r       *run
	ad      *Adaptive
	x       *adaptive.Index
	h       *image.Header
	planned int64 // bytes the plan fetches

	held  []Held
	found map[adaptive.Sum]adaptive.Location
	plan  []planItem // frames to fetch, in payload order
	// next is the aduimg chunk ReadChunk fills next, entry the index entry it takes bytes
	// from, at the offset in the payload reached.
	next, entry int
	at          int64
	whole       payloadHash // the payload's hash, when assembled from its start
	// spans are the pieces of aduimg chunk next, unchecked.
	spans []span
	// dec decodes frames; close may end it while a load decodes (decMu), after which
	// decoding fails.
	decMu sync.Mutex
	dec   *adaptive.Decoder
	// dict holds the base chunks of a delta frame, checked; dictOf names them (nil: none).
	// Neighbouring chunks often have the same ones: they are read and hashed once for them.
	dict   []byte
	dictOf []adaptive.BaseChunk
	// last, lastEntry and lastHeld are the bytes of the entry taken last, and whether the
	// device held them.
	last      []byte
	lastEntry int
	lastHeld  bool
	buf       []byte

	// fetched and requests count what the fetches cost (two goroutines fetch), reused what
	// the device held (counted by the loader, read by the writer's checkpoints); closeInput
	// adds them to the record.
	fetched, requests, reused atomic.Int64
	// cache is Adaptive.Cache when the target needs it (a UBI volume); cached counts what it
	// gave, cacheErr is the first error keeping a range.
	cache    FrameCache
	cached   atomic.Int64
	cacheErr atomic.Pointer[error]
	// base and baseDownloaded are the record's counts when the attempt began.
	base           AdaptiveRecord
	baseDownloaded int64
	how            string // AdaptiveRecord.Found

	cancel context.CancelFunc
	frames chan fetchedRange
	cur    *fetchedRange
	planAt int // next plan item ReadChunk takes
	wg     sync.WaitGroup
	once   sync.Once
}

// planItem is a frame the plan fetches: entry's, or its delta frame.
type planItem struct {
	entry int
	delta bool
}

// frame is where the item's frame lies in the store.
func (a *assembly) frame(it planItem) (off int64, n int) {
	e := a.x.Entries[it.entry]
	if it.delta {
		return e.Delta.Frame, e.Delta.FrameN
	}
	return e.Frame, e.FrameN
}

// payloadHash is a SHA-256 whose state can be kept and restored (sha256.New's), so that an
// aduimg chunk that does not match can be taken out of it again.
type payloadHash interface {
	hash.Hash
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// span is a piece of an aduimg chunk: n bytes of entry at from, at off in the chunk, taken
// from the device (held) or from a fetched frame.
type span struct {
	entry  int
	from   int64
	off, n int
	held   bool
}

// fetchedRange is the frames of plan items [from, to), or the error that ended the fetch.
type fetchedRange struct {
	from, to int
	base     int64
	data     []byte
	err      error
}

func (a *assembly) Read([]byte) (int, error) {
	return 0, errors.New("install: an assembly is read by chunks")
}

func (a *assembly) State() download.State {
	if a.h == nil {
		return download.State{}
	}
	return download.State{Size: a.h.RawSize, Offset: a.at}
}

func (a *assembly) head(int) ([]byte, io.Reader, error) { return nil, a, nil }

// stream starts fetching the plan's ranges in a goroutine, ahead of the assembly.
func (a *assembly) stream(func(int64) int64) {
	if a.frames != nil || a.h == nil {
		return
	}
	ctx, cancel := context.WithCancel(a.r.ctx)
	a.cancel = cancel
	a.frames = make(chan fetchedRange, 2)
	a.wg.Go(func() { a.fetchPlan(ctx) })
}

// countFetched counts n more bytes fetched, and tells the installer's meter if it listens.
func (a *assembly) countFetched(n int64) {
	a.fetched.Add(n)
	if m, ok := a.r.in.Meter.(AdaptiveMeter); ok {
		m.Fetched(n)
	}
}

// countReused counts n more payload bytes taken from the device, and tells the installer's
// meter if it listens.
func (a *assembly) countReused(n int64) {
	a.reused.Add(n)
	if m, ok := a.r.in.Meter.(AdaptiveMeter); ok {
		m.Reused(n)
	}
}

// count sets rec's counts: those of the attempts before this one (base) and this one's.
func (a *assembly) count(rec *Record) {
	ad := a.base
	n := a.fetched.Load()
	ad.Fetched += n
	ad.Requests += int(a.requests.Load())
	ad.Reused += a.reused.Load()
	ad.Planned, ad.Found = a.planned, a.how
	ad.Cached += a.cached.Load()
	if err := a.cacheErr.Load(); err != nil && ad.CacheError == "" {
		ad.CacheError = (*err).Error()
	}
	rec.Adaptive, rec.Downloaded = &ad, a.baseDownloaded+n
}

func (a *assembly) close() {
	a.once.Do(func() {
		if a.cancel != nil {
			a.cancel()
			for range a.frames {
			}
			a.wg.Wait()
		}
		a.decMu.Lock()
		defer a.decMu.Unlock()
		if a.dec != nil {
			a.dec.Close()
			a.dec = nil
		}
	})
}

// adaptiveFormat: the image's header fetched by Range and checked against the index, then the
// payload assembled.
type adaptiveFormat struct{}

func (adaptiveFormat) open(r *run, _ io.Reader) (*payload, error) {
	a := r.input.(*assembly)
	hdr, err := a.fetch(r.ctx, r.src.URL, r.src.Size, 0, a.x.HeaderSize)
	if err != nil {
		return nil, err
	}
	if image.Digest(sha256.Sum256(hdr)) != a.x.HeaderSHA256 {
		return nil, fmt.Errorf("%w: %w: the header served at %s", ErrAdaptive, adaptive.ErrMismatch, r.src.URL)
	}
	h, err := r.readHeader(bytes.NewReader(hdr))
	if err != nil {
		return nil, err
	}
	if h.ImageSize != r.src.Size {
		return nil, fmt.Errorf("%w: the image is %d bytes, the manifest says %d", ErrImage, h.ImageSize, r.src.Size)
	}
	return a.payload(h, 0)
}

func (adaptiveFormat) resume(r *run, _ io.Reader, rec *Record) (*payload, error) {
	a, ok := r.input.(*assembly)
	if !ok {
		return nil, errStale
	}
	h, err := r.resumeHeader(rec)
	if err != nil {
		return nil, err
	}
	c := rec.Cursor
	if c.Offset != rec.Download.Offset || c.Offset != int64(c.Chunk)*int64(h.ChunkSize) && c.Chunk < len(h.Chunks) {
		return nil, errStale
	}
	return a.payload(h, c.Chunk)
}

// payload checks the index against the verified header, finds what the device holds and
// plans the fetches from aduimg chunk first on.
func (a *assembly) payload(h *image.Header, first int) (*payload, error) {
	if err := a.x.Matches(h); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAdaptive, err)
	}
	a.h, a.next = h, first
	if first < len(h.Chunks) {
		a.at = int64(first) * int64(h.ChunkSize)
	} else {
		a.at = h.RawSize
	}
	if first == 0 {
		w, ok := sha256.New().(payloadHash)
		if !ok {
			return nil, errors.New("install: adaptive: the payload's SHA-256 cannot keep its state")
		}
		a.whole = w
	}
	if t := a.r.target; a.ad.Cache != nil && t != nil && t.Slot().Type == slots.TypeUBI {
		a.cache = a.ad.Cache
	}
	if err := a.scan(); err != nil {
		return nil, err
	}
	a.makePlan()
	dec, err := adaptive.NewDecoder(a.x.Params)
	if err != nil {
		return nil, err
	}
	a.dec, a.buf = dec, make([]byte, a.x.Params.Max)
	p, err := aduimgPayload(h, bytes.NewReader(nil), first)
	if err != nil {
		return nil, err
	}
	p.format, p.chunks, p.r, p.stop = FormatAdaptive, a, nil, nil
	p.at = func(c slots.Cursor) int64 { return c.Offset }
	return p, nil
}

// scan finds the index's chunks in what the device holds and in what an earlier attempt
// wrote into the target slot: past the resume point when the install resumes, else the
// aduimg chunks at the slot's start that match the signed header (an attempt that left no
// resume record: its journal lost, or the deployment retried after a failure). Where the
// index's base map puts them, in the first thing held that holds them all there; in the
// others by cutting each on every core at once, then beside the chunks found (Index.Extend,
// which looks nowhere in the mapped thing: the map has what it would find there).
func (a *assembly) scan() error {
	a.held = append([]Held(nil), a.ad.Held...)
	from := make([]int64, len(a.held))
	prefix := -1 // the target's earlier attempt, when it is in a.held without a resume point
	if t := a.r.target; t != nil && a.at < a.h.RawSize && t.Slot().Type != slots.TypeUBI {
		if sr, err := t.OpenReader(); err == nil {
			a.r.closers = append(a.r.closers, sr.Close)
			size := min(sr.Size(), a.h.RawSize)
			if a.at > 0 {
				a.held = append(a.held, Held{Name: t.Slot().String() + " (target)", R: sr, Size: size})
				from = append(from, a.at)
			} else if n := a.writtenBefore(sr, size); n > 0 {
				prefix = len(a.held)
				a.held = append(a.held, Held{Name: t.Slot().String() + " (an earlier attempt)", R: sr, Size: n})
				from = append(from, n)
			}
		}
	}
	wanted := a.x.Wanted()
	a.found = make(map[adaptive.Sum]adaptive.Location, len(wanted))
	sources := make([]adaptive.Source, len(a.held))
	mapped, scanned := false, false
	defer func() {
		a.how = FoundByCut
		if mapped {
			a.how = FoundByBaseMap
		}
	}()
	for i, hd := range a.held {
		if i == prefix {
			continue // its chunks lie where the payload has them: placed below
		}
		if !mapped && from[i] == 0 {
			ok, err := a.x.HoldsBase(hd.R, hd.Size, i, runtime.GOMAXPROCS(0), a.found)
			if err != nil {
				return fmt.Errorf("%w: %w: reading %s where the index's base map puts its chunks: %w", ErrAdaptive, ErrRead, hd.Name, err)
			}
			if mapped = ok; ok {
				continue // the map is what the cut and Extend find in it: it needs neither
			}
		}
		if err := a.x.Params.Scan(hd.R, i, from[i], hd.Size-from[i], runtime.GOMAXPROCS(0), wanted, a.found); err != nil {
			return fmt.Errorf("%w: %w: scanning %s: %w", ErrAdaptive, ErrRead, hd.Name, err)
		}
		sources[i] = adaptive.Source{R: hd.R, From: from[i], End: hd.Size}
		scanned = true
	}
	if prefix >= 0 {
		for _, e := range a.x.Entries {
			if e.Offset+int64(e.Size) > a.held[prefix].Size {
				break
			}
			a.found[e.Sum] = adaptive.Location{Source: prefix, Offset: e.Offset}
		}
	}
	if !scanned {
		return nil
	}
	if _, err := a.x.Extend(sources, a.found); err != nil {
		return fmt.Errorf("%w: %w: reading beside the chunks found: %w", ErrAdaptive, ErrRead, err)
	}
	return nil
}

// writtenBefore is how many bytes at the start of r (the target slot, size bytes of it) are
// the payload's first aduimg chunks, each checked against the signed header: what an earlier
// attempt wrote. A chunk that does not match or cannot be read ends them.
func (a *assembly) writtenBefore(r io.ReaderAt, size int64) int64 {
	var buf []byte
	var n int64
	for i, c := range a.h.Chunks {
		end := c.RawOffset + int64(c.RawSize)
		if end > size {
			break
		}
		if cap(buf) < c.RawSize {
			buf = make([]byte, c.RawSize)
		}
		b := buf[:c.RawSize]
		if k, _ := r.ReadAt(b, c.RawOffset); k < len(b) || a.h.VerifyChunk(i, b) != nil {
			break
		}
		n = end
	}
	return n
}

// makePlan lists the frames to fetch from the assembly's offset on: of each entry the device
// does not hold, its delta frame when the device holds its base, else its frame.
func (a *assembly) makePlan() {
	a.entry = a.entryAt(a.at)
	prev := int64(-1)
	for i := a.entry; i < len(a.x.Entries); i++ {
		e := a.x.Entries[i]
		if _, ok := a.found[e.Sum]; ok {
			continue
		}
		it := planItem{entry: i}
		it.delta = e.Delta != nil && a.holdsBases(e.Delta)
		a.plan = append(a.plan, it)
		if off, n := a.frame(it); off != prev {
			a.planned += int64(n)
			prev = off
		}
	}
}

// entryAt is the index of the entry holding payload offset off.
func (a *assembly) entryAt(off int64) int {
	es := a.x.Entries
	lo, hi := 0, len(es)
	for lo < hi {
		m := (lo + hi) / 2
		if es[m].Offset+int64(es[m].Size) <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// ReadChunk fills p with the next aduimg chunk, checked against the signed header (the last
// one only after the whole payload's hash, when assembled from the start): each piece is
// hashed as soon as it is in p, on other cores, while the next is put together. The pieces
// are not hashed on their own unless the aduimg chunk does not match: then each is checked
// against the index, one that does not match is fetched alone (refill), and the chunk is
// checked again.
func (a *assembly) ReadChunk(p []byte) (int, error) {
	if a.next >= len(a.h.Chunks) {
		return 0, io.EOF
	}
	p = p[:a.h.Chunks[a.next].RawSize]
	kept, err := a.keepWhole()
	if err != nil {
		return 0, err
	}
	cc := a.h.NewChunkCheck(a.next, a.whole)
	if err := a.fill(p, cc); err != nil {
		cc.Done()
		return 0, err
	}
	err = a.checked(cc.Done(), kept)
	if err != nil && len(a.spans) > 0 {
		if err = a.refill(p); err != nil {
			return 0, err
		}
		err = a.check(p)
	}
	if err != nil {
		return 0, err
	}
	for _, s := range a.spans {
		if s.held {
			a.countReused(int64(s.n))
		}
	}
	a.next++
	a.at += int64(len(p))
	return len(p), nil
}

// fill puts the entries' bytes of aduimg chunk a.next into p, noting its pieces, and gives
// each piece to cc as soon as it is in p. Held entries that lie whole in p, one after the
// other on the device as in the payload, are read into p at once.
func (a *assembly) fill(p []byte, cc *image.ChunkCheck) error {
	a.spans = a.spans[:0]
	for filled := 0; filled < len(p); {
		if n, err := a.readRun(p, filled); err != nil {
			return err
		} else if n > 0 {
			cc.Add(p[filled : filled+n])
			filled += n
			continue
		}
		raw, held, err := a.entryBytes()
		if err != nil {
			return err
		}
		e := a.x.Entries[a.entry]
		from := a.at + int64(filled) - e.Offset
		n := copy(p[filled:], raw[from:])
		cc.Add(p[filled : filled+n])
		a.spans = append(a.spans, span{entry: a.entry, from: from, off: filled, n: n, held: held})
		filled += n
		if from+int64(n) == int64(e.Size) {
			a.entry++
		}
	}
	return nil
}

// readRun reads into p at off the held entries from a.entry on that lie whole in p and one
// after the other on the device, and returns how many bytes they are (0: a.entry is not
// such an entry).
func (a *assembly) readRun(p []byte, off int) (int, error) {
	var first adaptive.Location
	n, i := 0, a.entry
	for ; i < len(a.x.Entries); i++ {
		e := a.x.Entries[i]
		loc, held := a.found[e.Sum]
		if !held || e.Offset != a.at+int64(off+n) || off+n+e.Size > len(p) ||
			n > 0 && (loc.Source != first.Source || loc.Offset != first.Offset+int64(n)) {
			break
		}
		if n == 0 {
			first = loc
		}
		a.spans = append(a.spans, span{entry: i, off: off + n, n: e.Size, held: true})
		n += e.Size
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := a.read(first, p[off:off+n]); err != nil {
		return 0, err
	}
	a.entry = i
	return n, nil
}

// refill checks the pieces of p against the index. A held piece is read again, and fetched
// alone when its entry no longer matches (the device's bytes changed since the scan, or
// they only shared its Weak). A fetched piece that is its whole entry is checked where it
// is; one that does not match (decoded against base chunks that changed, or a chunk store
// that serves another chunk), and one of an entry that a chunk boundary splits, is fetched
// alone, its own frame, checked: a store that serves it wrong again ends the attempt. The
// pieces that stay held are those of entries still matching.
func (a *assembly) refill(p []byte) error {
	if !a.lastHeld {
		a.last = bytes.Clone(a.last) // a fetch below decodes over it
	}
	spans := a.spans[:0]
	for _, s := range a.spans {
		e := a.x.Entries[s.entry]
		piece := p[s.off : s.off+s.n]
		if !s.held && s.n == e.Size && adaptive.Verify(e, piece) == nil {
			continue
		}
		var raw []byte
		var err error
		held := false
		if s.held {
			if raw, err = a.read(a.found[e.Sum], make([]byte, e.Size)); err != nil {
				return err
			}
			held = adaptive.Verify(e, raw) == nil
		}
		if !held {
			if !s.held {
				a.dictOf = nil // its base chunks may have changed: the next delta frame reads them again
			}
			if raw, err = a.fetchAlone(e); err != nil {
				return err
			}
			raw = bytes.Clone(raw) // the next fetch decodes over it
		}
		copy(piece, raw[s.from:])
		if held {
			spans = append(spans, s)
		}
		if s.entry == a.lastEntry {
			a.last, a.lastHeld = raw, held
		}
	}
	a.spans = spans
	return nil
}

// check checks aduimg chunk a.next against the signed header and, when the payload is
// assembled from its start, adds it to the payload's hash (alongside), which it checks at
// the last chunk. A chunk that does not match leaves the payload's hash as it was.
func (a *assembly) check(p []byte) error {
	kept, err := a.keepWhole()
	if err != nil {
		return err
	}
	return a.checked(a.h.VerifyChunkHashing(a.next, p, a.whole), kept)
}

// keepWhole returns the state of the payload's hash (nil: none), for checked to restore.
func (a *assembly) keepWhole() ([]byte, error) {
	if a.whole == nil {
		return nil, nil
	}
	kept, err := a.whole.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("install: adaptive: the payload's SHA-256: %w", err)
	}
	return kept, nil
}

// checked completes the check of aduimg chunk a.next, which the payload's hash has taken
// (err: the chunk's own check): when it does not match, the payload's hash goes back to its
// state kept before; at the last chunk, the payload's hash is checked.
func (a *assembly) checked(err error, kept []byte) error {
	if err != nil {
		if kept != nil {
			if rerr := a.whole.UnmarshalBinary(kept); rerr != nil {
				return fmt.Errorf("install: adaptive: the payload's SHA-256: %w", rerr)
			}
		}
		return fmt.Errorf("%w: %w", ErrAdaptive, err)
	}
	if a.whole != nil && a.next == len(a.h.Chunks)-1 && image.Digest(a.whole.Sum(nil)) != a.h.PayloadSHA256 {
		return fmt.Errorf("%w: %w", ErrAdaptive, image.ErrPayloadHash)
	}
	return nil
}

// entryBytes returns the bytes of entry a.entry, kept while a chunk boundary splits them, and
// whether they are what the device holds (unchecked: the aduimg chunk's check covers them).
func (a *assembly) entryBytes() ([]byte, bool, error) {
	if a.last != nil && a.lastEntry == a.entry {
		return a.last, a.lastHeld, nil
	}
	e := a.x.Entries[a.entry]
	loc, held := a.found[e.Sum]
	var raw []byte
	var err error
	if held {
		raw, err = a.read(loc, a.buf[:e.Size])
	} else {
		raw, err = a.chunk(a.entry)
	}
	a.last, a.lastEntry, a.lastHeld = raw, a.entry, held
	return raw, held, err
}

// chunk returns entry i's bytes, unchecked (ReadChunk checks them with the aduimg chunk),
// from the next frame of the plan's ranges. A read of the base of a delta frame that fails
// ends the attempt (the scan read it all: the device is failing or losing power), with no
// fallback that would fetch what the next attempt's scan may find.
func (a *assembly) chunk(i int) ([]byte, error) {
	e := a.x.Entries[i]
	it, frame, err := a.nextFrame(i)
	if err != nil || !it.delta {
		return a.decode(e, nil, frame, err)
	}
	dict, err := a.bases(e)
	if err != nil {
		return nil, err
	}
	return a.decode(e, dict, frame, nil)
}

// holdsBases tells whether the device holds every base chunk of d.
func (a *assembly) holdsBases(d *adaptive.Delta) bool {
	for _, bc := range d.Bases {
		if _, ok := a.found[bc.Sum]; !ok {
			return false
		}
	}
	return true
}

// bases returns the base chunks of e's delta frame, read from the device into the
// dictionary buffer (at most adaptive.MaxDict bytes), unchecked: the chunk decoded against
// them is checked with its aduimg chunk, and fetched alone when it does not match; the
// buffer's, when it holds them already.
func (a *assembly) bases(e adaptive.Entry) ([]byte, error) {
	d := e.Delta
	if a.dictOf != nil && slices.Equal(a.dictOf, d.Bases) {
		return a.dict, nil
	}
	a.dictOf = nil
	a.dict = slices.Grow(a.dict[:0], d.DictSize())[:d.DictSize()]
	at := 0
	for _, bc := range d.Bases {
		if _, err := a.read(a.found[bc.Sum], a.dict[at:at+bc.Size]); err != nil {
			return nil, err
		}
		at += bc.Size
	}
	a.dictOf = d.Bases
	return a.dict, nil
}

// read reads into p what the device holds at loc.
func (a *assembly) read(loc adaptive.Location, p []byte) ([]byte, error) {
	hd := a.held[loc.Source]
	if _, err := hd.R.ReadAt(p, loc.Offset); err != nil {
		return nil, fmt.Errorf("%w: %s at %d: %w", ErrRead, hd.Name, loc.Offset, err)
	}
	return p, nil
}

// fetchAlone fetches e's frame by itself, checked: what the device held of it (or of its
// delta's base) no longer matches, or its aduimg chunk did not.
func (a *assembly) fetchAlone(e adaptive.Entry) ([]byte, error) {
	frame, err := a.fetch(a.r.ctx, a.ad.StoreURL, a.x.StoreSize, e.Frame, int64(e.FrameN))
	raw, err := a.decode(e, nil, frame, err)
	if err == nil {
		if err = adaptive.Verify(e, raw); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrAdaptive, a.ad.StoreURL, err)
		}
	}
	return raw, err
}

// decode returns the chunk frame (fetched with err) holds, unchecked but for its size: a
// delta against dict when dict is set.
func (a *assembly) decode(e adaptive.Entry, dict, frame []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	a.decMu.Lock()
	defer a.decMu.Unlock()
	if a.dec == nil {
		return nil, fmt.Errorf("install: adaptive: the chunk at payload offset %d: %w", e.Offset, errEnded)
	}
	raw, err := a.dec.Decode(e, dict, frame)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrAdaptive, a.ad.StoreURL, err)
	}
	return raw, nil
}

// nextFrame returns the next item of the plan, entry i's, and its frame from the fetched
// ranges.
func (a *assembly) nextFrame(i int) (planItem, []byte, error) {
	if a.planAt >= len(a.plan) || a.plan[a.planAt].entry != i {
		return planItem{}, nil, fmt.Errorf("install: adaptive: entry %d is not the plan's next", i)
	}
	for a.cur == nil || a.planAt >= a.cur.to {
		fr, ok := <-a.frames
		if !ok {
			return planItem{}, nil, fmt.Errorf("%w: the chunk store's fetch ended early", ErrAdaptive)
		}
		if fr.err != nil {
			return planItem{}, nil, fr.err
		}
		if fr.from != a.planAt {
			// close drains the ranges while a load may still wait for one: the load ends.
			return planItem{}, nil, fmt.Errorf("install: adaptive: plan item %d: %w", a.planAt, errEnded)
		}
		a.cur = &fr
	}
	it := a.plan[a.planAt]
	a.planAt++
	off, n := a.frame(it)
	off -= a.cur.base
	return it, a.cur.data[off : off+int64(n)], nil
}

// fetchPlan fetches the plan's frames in coalesced ranges, up to rangesInFlight requests at
// once, and sends the ranges on in order; after a range that failed, none.
func (a *assembly) fetchPlan(ctx context.Context) {
	defer close(a.frames)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inFlight := make(chan chan fetchedRange, rangesInFlight-1) // the ranges asked for, in order
	a.wg.Go(func() {
		defer close(inFlight)
		for next := 0; next < len(a.plan); {
			from := next
			to, start, end := a.coalesce(from)
			got := make(chan fetchedRange, 1)
			select {
			case inFlight <- got:
			case <-ctx.Done():
				return
			}
			a.wg.Go(func() {
				data, err := a.storeRange(ctx, start, end-start)
				got <- fetchedRange{from: from, to: to, base: start, data: data, err: err}
			})
			next = to
		}
	})
	for got := range inFlight {
		fr := <-got
		select {
		case a.frames <- fr:
		case <-ctx.Done():
			return
		}
		if fr.err != nil {
			return
		}
	}
}

// coalesce returns the plan items [from, to) that one request fetches, and its byte range:
// frames in store order with gaps of at most rangeGap, up to about rangeTarget bytes.
func (a *assembly) coalesce(from int) (to int, start, end int64) {
	start, n := a.frame(a.plan[from])
	end = start + int64(n)
	to = from + 1
	for ; to < len(a.plan); to++ {
		fs, n := a.frame(a.plan[to])
		fe := fs + int64(n)
		if fs >= start && fe <= end {
			continue // a repeat of a frame in the range
		}
		if fs < end || fs-end > rangeGap || fe-start > rangeTarget {
			break
		}
		end = fe
	}
	return to, start, end
}

// storeRange returns the n bytes at off of the chunk store: from the cache when it kept them,
// else fetched (and given to the cache to keep).
func (a *assembly) storeRange(ctx context.Context, off, n int64) ([]byte, error) {
	if a.cache == nil {
		return a.fetch(ctx, a.ad.StoreURL, a.x.StoreSize, off, n)
	}
	if b, ok := a.cache.Range(off, n); ok && int64(len(b)) == n {
		a.cached.Add(n)
		return b, nil
	}
	b, err := a.fetch(ctx, a.ad.StoreURL, a.x.StoreSize, off, n)
	if err == nil {
		if kerr := a.cache.Keep(off, b); kerr != nil {
			a.cacheErr.CompareAndSwap(nil, &kerr)
		}
	}
	return b, err
}

// fetch gets n bytes at off of the file at url (size bytes) with one Range request (a few
// tries on network and server errors). A server that answers with the whole file, or with
// another range, ends the adaptive install.
func (a *assembly) fetch(ctx context.Context, url string, size, off, n int64) ([]byte, error) {
	var err error
	for try := 0; try < 3; try++ {
		var b []byte
		if b, err = a.get(ctx, url, size, off, n); err == nil {
			return b, nil
		}
		var t *transientErr
		if !errors.As(err, &t) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %s bytes %d-%d: %w", ErrAdaptive, url, off, off+n-1, err)
}

type transientErr struct{ error }

func (t *transientErr) Unwrap() error { return t.error }

func (a *assembly) get(ctx context.Context, url string, size, off, n int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+n-1, 10))
	req.Header.Set("Accept-Encoding", "identity")
	a.requests.Add(1)
	resp, err := a.r.client().Do(req)
	if err != nil {
		return nil, &transientErr{err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil, fmt.Errorf("the server ignores Range (200 OK)")
	case resp.StatusCode >= 500:
		return nil, &transientErr{&download.StatusError{StatusCode: resp.StatusCode, Status: resp.Status}}
	case resp.StatusCode != http.StatusPartialContent:
		return nil, &download.StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	}
	want := fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size)
	if got := resp.Header.Get("Content-Range"); got != want {
		return nil, fmt.Errorf("%w: Content-Range %q, asked for %q", download.ErrBadResponse, got, want)
	}
	b := make([]byte, n)
	k, err := io.ReadFull(resp.Body, b)
	a.countFetched(int64(k))
	if err != nil {
		return nil, &transientErr{err}
	}
	return b, nil
}
