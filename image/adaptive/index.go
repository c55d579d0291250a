package adaptive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/errkind"
)

// Errors. Every refusal of an index, a store or a chunk wraps one of them.
var (
	// ErrMalformed: the index or store breaks a rule of the format (docs/adaptive.md).
	ErrMalformed = errkind.New(errkind.Input, "adaptive: malformed index")
	// ErrChunkHash: a chunk's bytes (fetched or found on the device) do not match the index.
	ErrChunkHash = errkind.New(errkind.Input, "adaptive: chunk hash mismatch")
	// ErrMismatch: the index is not the one of this image (header, payload hash or size).
	ErrMismatch = errkind.New(errkind.Input, "adaptive: index of another image")
)

// Magic numbers of the index and the store.
var (
	IndexMagic = []byte("\x89ADUIDX\n")
	StoreMagic = []byte("\x89ADUCHK\n")
)

// Sizes of the encodings.
const (
	indexFixed = 120
	// StoreHeader is the size of the store's header: frames start there.
	StoreHeader = 16
	// MaxIndexSize bounds an index a reader takes (about 4 million chunks).
	MaxIndexSize = indexFixed + 48*(4<<20)
	// indexVersion is the format of the index this package writes and reads.
	indexVersion = 5
	// flagBase marks an index that ends with its base map (Index.Base).
	flagBase = 1
	// MaxBases and MaxDict bound a delta frame's dictionary: at most MaxBases base chunks,
	// MaxDict bytes together (what a device holds in memory to decode one delta frame).
	MaxBases = 8
	MaxDict  = 1 << 20
)

// Entry tags (docs/adaptive.md).
const (
	tagChunk  = 0 // a chunk first seen here, its frame next in the store
	tagRepeat = 1 // a chunk seen before: the ordinal of its first occurrence among first occurrences
	tagDelta  = 2 // as tagChunk, followed by a delta frame against a chunk of the previous image
)

// Sum is a chunk's hash in the index: the first 16 bytes of its SHA-256. A server that wants
// bytes of its own taken for a chunk must find a second preimage of 128 bits, and every
// aduimg chunk assembled from chunks is checked against the image's signed header besides.
type Sum [16]byte

// Weak is a chunk's quick hash in the index: its CRC-32C and its CRC-32 (IEEE), both in
// hardware on amd64 and arm64 and about twenty times faster than SHA-256 here. A device finds
// its chunks by it (and their size) without hashing all it holds with SHA-256; what it takes
// by the Weak alone is proven by the signed aduimg chunk check, and by the Sum when that fails.
type Weak struct{ C, IEEE uint32 }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WeakOf returns the Weak of a chunk.
func WeakOf(chunk []byte) Weak {
	return Weak{C: crc32.Checksum(chunk, castagnoli), IEEE: crc32.ChecksumIEEE(chunk)}
}

// Key is what a device looks a chunk up by in what it holds: its Weak and its size.
type Key struct {
	Weak Weak
	Size int
}

// SumOf returns the Sum of a chunk.
func SumOf(chunk []byte) Sum {
	d := sha256.Sum256(chunk)
	return Sum(d[:16])
}

func (s Sum) String() string { return fmt.Sprintf("%x", s[:]) }

// Entry is one chunk of the payload, in payload order.
type Entry struct {
	Sum     Sum
	Weak    Weak
	Offset  int64 // in the payload
	Size    int   // raw bytes
	Frame   int64 // where its frame lies in the store (a repeat: its first occurrence's)
	FrameN  int   // frame length: Size for a stored chunk, less for zstd
	Repeats bool  // its frame is an earlier entry's
	// Delta, if set, is a shorter frame of the chunk: a zstd delta against a chunk of the
	// previous image, for a device that holds that chunk.
	Delta *Delta
}

// Delta is a changed chunk's frame as one zstd frame whose raw dictionary is chunks of the
// previous image (Bases, one after the other), which the device may hold.
type Delta struct {
	Bases  []BaseChunk
	Frame  int64
	FrameN int
}

// BaseChunk is a chunk of the previous image in a delta frame's dictionary.
type BaseChunk struct {
	Sum  Sum
	Weak Weak
	Size int
}

// DictSize is the size of the delta frame's dictionary: its base chunks' sizes added up.
func (d *Delta) DictSize() int {
	n := 0
	for _, b := range d.Bases {
		n += b.Size
	}
	return n
}

// Compressed tells whether the chunk's frame is zstd (shorter than the chunk) or its bytes.
func (e Entry) Compressed() bool { return e.FrameN < e.Size }

// Index is the adaptive index of one aduimg image: how its payload is cut into chunks, each
// chunk's hash, and where the chunk's frames lie in the store file.
type Index struct {
	Params        Params
	RawSize       int64
	StoreSize     int64
	PayloadSHA256 image.Digest
	HeaderSHA256  image.Digest // of the aduimg header as signed, signature block included
	HeaderSize    int64
	Entries       []Entry
	// Base, when set, is where the chunks the index names lie in the payload it was built
	// against (aduimport index --base): a device that holds that payload finds them there,
	// each checked by its Weak, instead of cutting all it holds (HoldsBase).
	Base *BaseMap
}

// BaseMap is where chunks the index names (entries, and base chunks of delta frames) lie in
// the payload the index was built against: what a device holding that payload would find by
// cutting it (Params.Scan in one part, then Index.Extend).
type BaseMap struct {
	Size int64         // the base payload's size
	At   map[Sum]int64 // the offset of each chunk found in it
}

// MaxBaseSize bounds the base payload a base map names (1 PiB).
const MaxBaseSize = 1 << 50

// named is a distinct chunk the index names.
type named struct {
	sum  Sum
	weak Weak
	size int
}

// distinct lists the chunks the index names, each once, in the order the base map gives
// their places: entries in payload order, each followed by its delta frame's base chunks.
func (x *Index) distinct() []named {
	seen := make(map[Sum]bool, len(x.Entries))
	var out []named
	add := func(s Sum, w Weak, size int) {
		if !seen[s] {
			seen[s] = true
			out = append(out, named{s, w, size})
		}
	}
	for _, e := range x.Entries {
		if e.Repeats {
			continue
		}
		add(e.Sum, e.Weak, e.Size)
		if d := e.Delta; d != nil {
			for _, bc := range d.Bases {
				add(bc.Sum, bc.Weak, bc.Size)
			}
		}
	}
	return out
}

// Encode returns the index file's bytes.
func (x *Index) Encode() []byte {
	b := make([]byte, indexFixed, indexFixed+32*len(x.Entries))
	copy(b, IndexMagic)
	le := binary.LittleEndian
	le.PutUint16(b[8:], indexVersion)
	if x.Base != nil {
		le.PutUint16(b[10:], flagBase)
	}
	le.PutUint32(b[12:], uint32(len(x.Entries)))
	le.PutUint32(b[16:], uint32(x.Params.Min))
	le.PutUint32(b[20:], uint32(x.Params.Avg))
	le.PutUint32(b[24:], uint32(x.Params.Max))
	le.PutUint64(b[32:], uint64(x.RawSize))
	le.PutUint64(b[40:], uint64(x.StoreSize))
	copy(b[48:], x.PayloadSHA256[:])
	copy(b[80:], x.HeaderSHA256[:])
	le.PutUint64(b[112:], uint64(x.HeaderSize))
	ordinal := map[Sum]int{}
	for _, e := range x.Entries {
		if e.Repeats {
			b = append(b, tagRepeat)
			b = binary.AppendUvarint(b, uint64(ordinal[e.Sum]))
			continue
		}
		ordinal[e.Sum] = len(ordinal)
		tag := byte(tagChunk)
		if e.Delta != nil {
			tag = tagDelta
		}
		b = appendWeak(append(append(b, tag), e.Sum[:]...), e.Weak)
		b = binary.AppendUvarint(binary.AppendUvarint(b, uint64(e.Size)), uint64(e.FrameN))
		if d := e.Delta; d != nil {
			b = binary.AppendUvarint(b, uint64(len(d.Bases)))
			for _, bc := range d.Bases {
				b = binary.AppendUvarint(appendWeak(append(b, bc.Sum[:]...), bc.Weak), uint64(bc.Size))
			}
			b = binary.AppendUvarint(b, uint64(d.FrameN))
		}
	}
	if x.Base != nil {
		b = x.Base.append(b, x.distinct())
	}
	return b
}

// append appends the base map: the base's size, then for each chunk the index names (in
// distinct's order) 0 when the base lacks it, else 1 + the zigzag of how far its place is
// from right after the place before it (mostly 0: what the base holds in order).
func (m *BaseMap) append(b []byte, chunks []named) []byte {
	b = binary.AppendUvarint(b, uint64(m.Size))
	next := int64(0)
	for _, c := range chunks {
		off, ok := m.At[c.sum]
		if !ok {
			b = append(b, 0)
			continue
		}
		d := off - next
		b = binary.AppendUvarint(b, uint64(d<<1^d>>63)+1)
		next = off + int64(c.size)
	}
	return b
}

// appendWeak appends w: its CRC-32C, then its CRC-32, little-endian.
func appendWeak(b []byte, w Weak) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(b, w.C), w.IEEE)
}

// IsIndex tells whether a file starts with the index magic.
func IsIndex(prefix []byte) bool { return bytes.HasPrefix(prefix, IndexMagic) }

// IsStore tells whether a file starts with the store magic.
func IsStore(prefix []byte) bool { return bytes.HasPrefix(prefix, StoreMagic) }

// ParseIndex reads an index file, checking every rule of the format: the frames it names lie
// in the store one after the other, the chunks add up to the payload, a repeat names a chunk
// seen before, a delta frame is shorter than the chunk's frame.
func ParseIndex(b []byte) (*Index, error) {
	if len(b) < indexFixed || !IsIndex(b) {
		return nil, fmt.Errorf("%w: no index magic, or shorter than %d bytes", ErrMalformed, indexFixed)
	}
	if len(b) > MaxIndexSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxIndexSize)
	}
	le := binary.LittleEndian
	if v := le.Uint16(b[8:]); v != indexVersion {
		return nil, fmt.Errorf("%w: format version %d, not %d", ErrMalformed, v, indexVersion)
	}
	flags := le.Uint16(b[10:])
	if flags&^flagBase != 0 || le.Uint32(b[28:]) != 0 {
		return nil, fmt.Errorf("%w: reserved bytes are not zero", ErrMalformed)
	}
	n := int(le.Uint32(b[12:]))
	if n > (len(b)-indexFixed)/2 {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", ErrMalformed, n, len(b)-indexFixed)
	}
	x := &Index{Params: Params{Min: int(le.Uint32(b[16:])), Avg: int(le.Uint32(b[20:])), Max: int(le.Uint32(b[24:]))},
		RawSize: int64(le.Uint64(b[32:])), StoreSize: int64(le.Uint64(b[40:])), HeaderSize: int64(le.Uint64(b[112:]))}
	copy(x.PayloadSHA256[:], b[48:80])
	copy(x.HeaderSHA256[:], b[80:112])
	if err := x.Params.Check(); err != nil {
		return nil, err
	}
	if x.RawSize < 0 || x.StoreSize < StoreHeader || x.HeaderSize <= 0 || x.HeaderSize > 16<<20 {
		return nil, fmt.Errorf("%w: raw size %d, store size %d, header size %d", ErrMalformed, x.RawSize, x.StoreSize, x.HeaderSize)
	}
	rest, err := x.parseEntries(b[indexFixed:], n)
	if err != nil {
		return nil, err
	}
	if flags&flagBase != 0 {
		if rest, err = x.parseBase(rest); err != nil {
			return nil, err
		}
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", ErrMalformed, len(rest))
	}
	return x, nil
}

// parseBase reads the base map from b and returns what follows it: every place within the
// base payload.
func (x *Index) parseBase(b []byte) ([]byte, error) {
	r := &entryReader{b: b}
	m := &BaseMap{Size: int64(r.uvarint(0, MaxBaseSize)), At: map[Sum]int64{}}
	next := int64(0)
	for i, c := range x.distinct() {
		v := r.uvarint(0, 2*MaxBaseSize+1)
		if r.err != nil {
			return nil, fmt.Errorf("%w: base map, chunk %d: %w", ErrMalformed, i, r.err)
		}
		if v == 0 {
			continue
		}
		v--
		off := next + (int64(v>>1) ^ -int64(v&1))
		if off < 0 || off > m.Size-int64(c.size) {
			return nil, fmt.Errorf("%w: base map, chunk %d: %d bytes at %d, outside the %d-byte base", ErrMalformed, i, c.size, off, m.Size)
		}
		m.At[c.sum] = off
		next = off + int64(c.size)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: base map: %w", ErrMalformed, r.err)
	}
	x.Base = m
	return r.b, nil
}

// entryReader reads the encoded entries.
type entryReader struct {
	b   []byte
	err error
}

// weak reads a Weak.
func (r *entryReader) weak() Weak {
	b := r.bytes(8)
	return Weak{C: binary.LittleEndian.Uint32(b), IEEE: binary.LittleEndian.Uint32(b[4:])}
}

func (r *entryReader) bytes(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = io.ErrUnexpectedEOF
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// size reads a uvarint in [lo, hi], in its shortest encoding.
func (r *entryReader) size(lo, hi int) int {
	return int(r.uvarint(uint64(lo), uint64(hi)))
}

// uvarint reads a uvarint in [lo, hi], in its shortest encoding.
func (r *entryReader) uvarint(lo, hi uint64) uint64 {
	v, k := binary.Uvarint(r.b)
	if r.err == nil && (k <= 0 || k != len(binary.AppendUvarint(nil, v)) || v < lo || v > hi) {
		r.err = fmt.Errorf("a number outside [%d, %d]", lo, hi)
	}
	if r.err != nil {
		return lo
	}
	r.b = r.b[k:]
	return v
}

// delta reads a delta frame's fields: its base chunks (at most MaxBases, MaxDict bytes
// together) and its length (shorter than the chunk's own frame, frameN).
func (r *entryReader) delta(p Params, frameN int) *Delta {
	d := &Delta{Bases: make([]BaseChunk, r.size(1, MaxBases))}
	for i := range d.Bases {
		bc := &d.Bases[i]
		copy(bc.Sum[:], r.bytes(len(bc.Sum)))
		bc.Weak = r.weak()
		bc.Size = r.size(1, p.Max)
	}
	if r.err == nil && d.DictSize() > MaxDict {
		r.err = fmt.Errorf("a delta dictionary of %d bytes, more than %d", d.DictSize(), MaxDict)
	}
	d.FrameN = r.size(1, frameN-1)
	return d
}

// parseEntries fills x.Entries from n encoded entries, checks them against the sizes and
// returns what follows them.
func (x *Index) parseEntries(b []byte, n int) ([]byte, error) {
	r := &entryReader{b: b}
	x.Entries = make([]Entry, n)
	var firsts []int // entries of first occurrences, in order
	var deltas []*Delta
	seen := map[Sum]bool{}
	var off, deltaEnd int64
	frame := int64(StoreHeader)
	for i := range x.Entries {
		e := &x.Entries[i]
		e.Offset = off
		switch tag := r.bytes(1)[0]; {
		case r.err != nil:
		case tag == tagRepeat:
			j := r.size(0, max(len(firsts)-1, 0))
			if r.err == nil && len(firsts) == 0 {
				r.err = errors.New("a repeat before any chunk")
			}
			if r.err == nil {
				f := x.Entries[firsts[j]]
				e.Sum, e.Weak, e.Size, e.Frame, e.FrameN, e.Delta, e.Repeats = f.Sum, f.Weak, f.Size, f.Frame, f.FrameN, f.Delta, true
			}
		case tag == tagChunk || tag == tagDelta:
			copy(e.Sum[:], r.bytes(len(e.Sum)))
			e.Weak = r.weak()
			e.Size = r.size(1, x.Params.Max)
			e.FrameN = r.size(1, e.Size)
			e.Frame = frame
			frame += int64(e.FrameN)
			if tag == tagDelta {
				d := r.delta(x.Params, e.FrameN)
				d.Frame = deltaEnd
				deltaEnd += int64(d.FrameN)
				e.Delta = d
				deltas = append(deltas, d)
			}
			if r.err == nil && seen[e.Sum] {
				r.err = errors.New("a chunk seen before, not encoded as a repeat")
			}
			seen[e.Sum] = true
			firsts = append(firsts, i)
		default:
			r.err = fmt.Errorf("tag %d", tag)
		}
		if r.err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrMalformed, i, r.err)
		}
		off += int64(e.Size)
	}
	for _, d := range deltas {
		d.Frame += frame // the delta frames follow the chunks' frames
	}
	frame += deltaEnd
	switch {
	case off != x.RawSize:
		return nil, fmt.Errorf("%w: the chunks hold %d bytes, the payload %d", ErrMalformed, off, x.RawSize)
	case frame != x.StoreSize:
		return nil, fmt.Errorf("%w: the frames end at %d, the store at %d", ErrMalformed, frame, x.StoreSize)
	}
	return r.b, nil
}

// Matches checks that x is the index of the image whose verified header h is: the header's
// SHA-256, payload size and payload hash.
func (x *Index) Matches(h *image.Header) error {
	enc := h.Encoded()
	switch {
	case int64(len(enc)) != x.HeaderSize || image.Digest(sha256.Sum256(enc)) != x.HeaderSHA256:
		return fmt.Errorf("%w: the image header is not the one the index names", ErrMismatch)
	case h.RawSize != x.RawSize || h.PayloadSHA256 != x.PayloadSHA256:
		return fmt.Errorf("%w: the index is of a %d-byte payload %s, the image's is %d bytes %s", ErrMismatch, x.RawSize, x.PayloadSHA256, h.RawSize, h.PayloadSHA256)
	}
	return nil
}

// Wanted is the set of chunks the index names, and the bases of its delta frames, by their
// Key: what a device looks for in what it holds. (Two chunks of one Key, a chance of about
// 2^-64, would leave one to be fetched.)
func (x *Index) Wanted() map[Key]Sum {
	m := make(map[Key]Sum, len(x.Entries))
	for _, e := range x.Entries {
		m[Key{e.Weak, e.Size}] = e.Sum
		if d := e.Delta; d != nil {
			for _, bc := range d.Bases {
				m[Key{bc.Weak, bc.Size}] = bc.Sum
			}
		}
	}
	return m
}

// RoleProperty is the related-file property (in an ADU import manifest) that tells an image's
// adaptive index (RoleIndex) from its chunk store (RoleStore).
const (
	RoleProperty = "aduflash.adaptive"
	RoleIndex    = "index"
	RoleStore    = "store"
)
