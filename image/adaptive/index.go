package adaptive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

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
	entrySize  = 40
	// StoreHeader is the size of the store's header: frames start there.
	StoreHeader = 16
	// MaxIndexSize bounds an index a reader takes: 4 million chunks, 40 GiB at 8 KiB.
	MaxIndexSize = indexFixed + entrySize*(4<<20)
)

// Entry is one chunk of the payload, in payload order.
type Entry struct {
	SHA256  image.Digest
	Offset  int64 // in the payload
	Size    int   // raw bytes
	Frame   int64 // where its frame lies in the store (a repeat: its first occurrence's)
	FrameN  int   // frame length: Size for a stored chunk, less for zstd
	Repeats bool  // its frame is an earlier entry's
}

// Compressed tells whether the chunk's frame is zstd (shorter than the chunk) or its bytes.
func (e Entry) Compressed() bool { return e.FrameN < e.Size }

// Index is the adaptive index of one aduimg image: how its payload is cut into chunks, each
// chunk's SHA-256, and where the chunk's frame lies in the store file.
type Index struct {
	Params        Params
	RawSize       int64
	StoreSize     int64
	PayloadSHA256 image.Digest
	HeaderSHA256  image.Digest // of the aduimg header as signed, signature block included
	HeaderSize    int64
	Entries       []Entry
}

// Encode returns the index file's bytes.
func (x *Index) Encode() []byte {
	b := make([]byte, indexFixed, indexFixed+entrySize*len(x.Entries))
	copy(b, IndexMagic)
	le := binary.LittleEndian
	le.PutUint16(b[8:], 1)
	le.PutUint32(b[12:], uint32(len(x.Entries)))
	le.PutUint32(b[16:], uint32(x.Params.Min))
	le.PutUint32(b[20:], uint32(x.Params.Avg))
	le.PutUint32(b[24:], uint32(x.Params.Max))
	le.PutUint64(b[32:], uint64(x.RawSize))
	le.PutUint64(b[40:], uint64(x.StoreSize))
	copy(b[48:], x.PayloadSHA256[:])
	copy(b[80:], x.HeaderSHA256[:])
	le.PutUint64(b[112:], uint64(x.HeaderSize))
	for _, e := range x.Entries {
		var ent [entrySize]byte
		copy(ent[:], e.SHA256[:])
		le.PutUint32(ent[32:], uint32(e.Size))
		if !e.Repeats {
			le.PutUint32(ent[36:], uint32(e.FrameN))
		}
		b = append(b, ent[:]...)
	}
	return b
}

// IsIndex tells whether a file starts with the index magic.
func IsIndex(prefix []byte) bool { return bytes.HasPrefix(prefix, IndexMagic) }

// IsStore tells whether a file starts with the store magic.
func IsStore(prefix []byte) bool { return bytes.HasPrefix(prefix, StoreMagic) }

// ParseIndex reads an index file, checking every rule of the format: the frames it names lie
// in the store one after the other, the chunks add up to the payload, a repeat names a chunk
// seen before.
func ParseIndex(b []byte) (*Index, error) {
	if len(b) < indexFixed || !IsIndex(b) {
		return nil, fmt.Errorf("%w: no index magic, or shorter than %d bytes", ErrMalformed, indexFixed)
	}
	if len(b) > MaxIndexSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxIndexSize)
	}
	le := binary.LittleEndian
	if v := le.Uint16(b[8:]); v != 1 {
		return nil, fmt.Errorf("%w: format version %d, not 1", ErrMalformed, v)
	}
	if le.Uint16(b[10:]) != 0 || le.Uint32(b[28:]) != 0 {
		return nil, fmt.Errorf("%w: reserved bytes are not zero", ErrMalformed)
	}
	n := int(le.Uint32(b[12:]))
	if len(b) != indexFixed+entrySize*n {
		return nil, fmt.Errorf("%w: %d bytes for %d entries, want %d", ErrMalformed, len(b), n, indexFixed+entrySize*n)
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
	if err := x.parseEntries(b[indexFixed:], n); err != nil {
		return nil, err
	}
	return x, nil
}

// parseEntries fills x.Entries from n encoded entries and checks them against the sizes.
func (x *Index) parseEntries(b []byte, n int) error {
	le := binary.LittleEndian
	x.Entries = make([]Entry, n)
	first := make(map[image.Digest]int, n)
	var off int64
	frame := int64(StoreHeader)
	for i := range x.Entries {
		ent := b[i*entrySize:]
		e := &x.Entries[i]
		copy(e.SHA256[:], ent[:32])
		e.Size, e.FrameN, e.Offset = int(le.Uint32(ent[32:])), int(le.Uint32(ent[36:])), off
		if e.Size < 1 || e.Size > x.Params.Max {
			return fmt.Errorf("%w: entry %d: chunk of %d bytes, not in [1, %d]", ErrMalformed, i, e.Size, x.Params.Max)
		}
		if j, seen := first[e.SHA256]; seen {
			if e.FrameN != 0 || x.Entries[j].Size != e.Size {
				return fmt.Errorf("%w: entry %d repeats entry %d with another frame or size", ErrMalformed, i, j)
			}
			e.Frame, e.FrameN, e.Repeats = x.Entries[j].Frame, x.Entries[j].FrameN, true
		} else {
			if e.FrameN < 1 || e.FrameN > e.Size {
				return fmt.Errorf("%w: entry %d: frame of %d bytes for a chunk of %d", ErrMalformed, i, e.FrameN, e.Size)
			}
			first[e.SHA256] = i
			e.Frame = frame
			frame += int64(e.FrameN)
		}
		off += int64(e.Size)
	}
	if off != x.RawSize {
		return fmt.Errorf("%w: the chunks hold %d bytes, the payload %d", ErrMalformed, off, x.RawSize)
	}
	if frame != x.StoreSize {
		return fmt.Errorf("%w: the frames end at %d, the store at %d", ErrMalformed, frame, x.StoreSize)
	}
	return nil
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

// Wanted is the set of chunk hashes the index names.
func (x *Index) Wanted() map[image.Digest]int {
	m := make(map[image.Digest]int, len(x.Entries))
	for _, e := range x.Entries {
		m[e.SHA256] = e.Size
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
