package adaptive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"

	"github.com/klauspost/compress/zstd"

	"github.com/aduflash/aduflash/image"
)

// IndexImage verifies the aduimg image read from img with kr (its signature, every chunk) and
// builds its index with p, writing the store (with delta frames against base, if set): what
// aduimport index does.
func IndexImage(img io.Reader, kr *image.Keyring, p Params, store io.Writer, base *Base) (*Index, error) {
	rd, err := image.NewReader(img, image.VerifyOptions{Keyring: kr})
	if err != nil {
		return nil, err
	}
	return Build(rd.Header(), rd, p, store, base)
}

// Base is the payload of the image the devices are expected to run (Size bytes of R): a
// chunk of the new payload that it lacks gets a delta frame against the base chunks most
// like it (resemble.go): the one that holds the most of its anchors, and its neighbours.
type Base struct {
	R    io.ReaderAt
	Size int64
}

// builder writes the store and the entries of Build.
type builder struct {
	x     *Index
	w     *bufio.Writer
	enc   *zstd.Encoder
	frame int64
	first map[Sum]Entry
	buf   []byte
	// deltas are the delta frames, written after the last chunk's frame; their entries'
	// Delta.Frame is relative to their start until then.
	deltas bytes.Buffer
	// base's chunks in order, where each one first lies, and the anchors of its chunks.
	base       *Base
	baseChunks []baseChunk
	baseAt     map[Sum]int
	like       *resemblance
}

type baseChunk struct {
	sum  Sum
	weak Weak
	off  int64
	size int
}

// Build cuts the payload of the verified image h (read from payload) into chunks with p and
// writes the store: its header, then each chunk's frame at its first occurrence (zstd, or its
// bytes where zstd would not make it smaller), then the delta frames, in the same order, of
// the chunks that have one: against a chunk of base, where that is shorter (base may be nil;
// the delta frames are kept in memory until the end). It returns the index of what it wrote.
func Build(h *image.Header, payload io.Reader, p Params, store io.Writer, base *Base) (*Index, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow(p.Max)), zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("adaptive: %w", err)
	}
	defer enc.Close()
	hdr := h.Encoded()
	b := &builder{x: &Index{Params: p, RawSize: h.RawSize, PayloadSHA256: h.PayloadSHA256, HeaderSHA256: sha256.Sum256(hdr), HeaderSize: int64(len(hdr))},
		w: bufio.NewWriterSize(store, 1<<20), enc: enc, frame: StoreHeader, first: map[Sum]Entry{}, base: base}
	if err := b.cutBase(); err != nil {
		return nil, err
	}
	head := make([]byte, StoreHeader)
	copy(head, StoreMagic)
	head[8] = 1
	if _, err := b.w.Write(head); err != nil {
		return nil, err
	}
	if err := p.Split(payload, b.add); err != nil {
		return nil, err
	}
	if err := b.writeDeltas(); err != nil {
		return nil, err
	}
	if err := b.mapBase(); err != nil {
		return nil, err
	}
	if err := b.w.Flush(); err != nil {
		return nil, err
	}
	b.x.StoreSize = b.frame
	if n := sumSizes(b.x.Entries); n != h.RawSize {
		return nil, fmt.Errorf("%w: the payload read has %d bytes, the image %d", ErrMalformed, n, h.RawSize)
	}
	return b.x, nil
}

// mapBase records in the index where the chunks it names lie in the base: those the base's
// cut holds (where each first lies), then those beside them (Index.Extend), as a device that
// holds the base would find them by cutting it in one part.
func (b *builder) mapBase() error {
	if b.base == nil {
		return nil
	}
	found := map[Sum]Location{}
	for _, c := range b.x.distinct() {
		if i, ok := b.baseAt[c.sum]; ok {
			found[c.sum] = Location{Offset: b.baseChunks[i].off}
		}
	}
	if _, err := b.x.Extend([]Source{{R: b.base.R, End: b.base.Size}}, found); err != nil {
		return fmt.Errorf("adaptive: the base: %w", err)
	}
	m := &BaseMap{Size: b.base.Size, At: make(map[Sum]int64, len(found))}
	for s, loc := range found {
		m.At[s] = loc.Offset
	}
	b.x.Base = m
	return nil
}

// cutBase cuts the base payload into chunks and notes the anchors of each distinct one.
func (b *builder) cutBase() error {
	if b.base == nil {
		return nil
	}
	b.baseAt, b.like = map[Sum]int{}, newResemblance()
	err := b.x.Params.Split(io.NewSectionReader(b.base.R, 0, b.base.Size), func(off int64, chunk []byte) error {
		s := SumOf(chunk)
		if _, seen := b.baseAt[s]; !seen {
			b.baseAt[s] = len(b.baseChunks)
			b.like.add(len(b.baseChunks), chunk)
		}
		b.baseChunks = append(b.baseChunks, baseChunk{sum: s, weak: WeakOf(chunk), off: off, size: len(chunk)})
		return nil
	})
	b.like.last = len(b.baseChunks) - 1
	return err
}

// add appends the entry of the chunk at off, writing its frames at its first occurrence.
func (b *builder) add(off int64, chunk []byte) error {
	e := Entry{Sum: SumOf(chunk), Weak: WeakOf(chunk), Offset: off, Size: len(chunk)}
	if f, seen := b.first[e.Sum]; seen {
		e.Frame, e.FrameN, e.Delta, e.Repeats = f.Frame, f.FrameN, f.Delta, true
		b.x.Entries = append(b.x.Entries, e)
		return nil
	}
	b.buf = b.enc.EncodeAll(chunk, b.buf[:0])
	out := b.buf
	if len(out) >= len(chunk) {
		out = chunk
	}
	e.Frame, e.FrameN = b.frame, len(out)
	if _, err := b.w.Write(out); err != nil {
		return err
	}
	b.frame += int64(len(out))
	if _, inBase := b.baseAt[e.Sum]; !inBase && b.base != nil {
		d, err := b.delta(chunk, len(out))
		if err != nil {
			return err
		}
		e.Delta = d
	}
	b.first[e.Sum] = e
	b.x.Entries = append(b.x.Entries, e)
	return nil
}

// deltaGain is how much shorter than the chunk's own frame a delta frame must be to be
// written (it costs an index entry of about this many bytes more).
const deltaGain = 24

// delta writes the delta frame of chunk against the base chunks most like it when it is at
// least deltaGain bytes shorter than full, and returns its entry (nil when it is not).
func (b *builder) delta(chunk []byte, full int) (*Delta, error) {
	like, ok := b.like.best(chunk)
	if !ok {
		return nil, nil
	}
	bases := b.dictAround(like)
	var dict []byte
	for _, i := range bases {
		bc := b.baseChunks[i]
		dict = append(dict, make([]byte, bc.size)...)
		if _, err := b.base.R.ReadAt(dict[len(dict)-bc.size:], bc.off); err != nil {
			return nil, fmt.Errorf("adaptive: reading the base at %d: %w", bc.off, err)
		}
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(deltaWindow(b.x.Params)), zstd.WithEncoderCRC(false), zstd.WithEncoderDictRaw(deltaDictID, dict))
	if err != nil {
		return nil, fmt.Errorf("adaptive: %w", err)
	}
	defer enc.Close()
	frame := enc.EncodeAll(chunk, nil)
	if len(frame)+deltaGain > full {
		return nil, nil
	}
	d := &Delta{Frame: int64(b.deltas.Len()), FrameN: len(frame)}
	for _, i := range bases {
		bc := b.baseChunks[i]
		d.Bases = append(d.Bases, BaseChunk{Sum: bc.sum, Weak: bc.weak, Size: bc.size})
	}
	b.deltas.Write(frame)
	return d, nil
}

// dictSpan is how many base chunks a delta frame's dictionary takes on each side of the
// most similar one (docs/adaptive.md: a file that moved and grew still finds its old bytes).
const dictSpan = 1

// dictAround returns the base chunks of the dictionary for base chunk i: it and its
// neighbours, consecutive in the base (but its last chunk), at most MaxBases and MaxDict
// bytes.
func (b *builder) dictAround(i int) []int {
	out := []int{i}
	size := b.baseChunks[i].size
	for k := 1; k <= dictSpan; k++ {
		for _, j := range []int{i - k, i + k} {
			if j < 0 || j >= b.like.last || len(out) == MaxBases || size+b.baseChunks[j].size > MaxDict {
				continue
			}
			out = append(out, j)
			size += b.baseChunks[j].size
		}
	}
	slices.Sort(out)
	return out
}

// writeDeltas writes the delta frames after the chunks' frames, where the entries now say.
func (b *builder) writeDeltas() error {
	for _, e := range b.x.Entries {
		if e.Delta != nil && !e.Repeats {
			e.Delta.Frame += b.frame
		}
	}
	n, err := b.w.Write(b.deltas.Bytes())
	b.frame += int64(n)
	return err
}

// deltaDictID is the dictionary id of delta frames; deltaWindow their encoder's window (the
// dictionary and the chunk: matches reach the whole dictionary).
const deltaDictID = 1

func deltaWindow(p Params) int { return 2 * zstdWindow(MaxDict+p.Max) }

func sumSizes(es []Entry) int64 {
	var n int64
	for _, e := range es {
		n += int64(e.Size)
	}
	return n
}

// zstdWindow is the largest power of two ≤ the largest chunk (at least zstd's 1 KiB).
func zstdWindow(maxChunk int) int {
	w := 1 << 10
	for w*2 <= maxChunk {
		w *= 2
	}
	return w
}

// Decoder turns frames into the chunks they hold, checked against their entries.
type Decoder struct {
	p   Params
	dec *zstd.Decoder
	buf []byte
}

// NewDecoder returns a decoder for chunks of at most p.Max bytes (one goroutine, low memory).
func NewDecoder(p Params) (*Decoder, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(zstdWindow(p.Max))), zstd.WithDecoderMaxMemory(uint64(p.Max)),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return nil, fmt.Errorf("adaptive: %w", err)
	}
	return &Decoder{p: p, dec: d, buf: make([]byte, 0, p.Max)}, nil
}

// Close releases the decoder.
func (d *Decoder) Close() { d.dec.Close() }

// Decode returns the bytes e's frame holds, or its delta frame's decoded against dict when
// dict is set (valid until the next call), checked for their size only: the caller checks
// them (Verify), or checks bytes that cover them against the signed header and Verifies them
// when those do not match. A frame that does not decode into e.Size bytes is an error
// wrapping ErrChunkHash. Besides dict (at most MaxDict bytes) and the chunk, decoding a delta
// frame allocates the decoder's state (docs/adaptive.md).
func (d *Decoder) Decode(e Entry, dict, frame []byte) ([]byte, error) {
	var raw []byte
	var err error
	if dict != nil {
		raw, err = d.delta(e, dict, frame)
	} else if len(frame) != e.FrameN {
		return nil, fmt.Errorf("%w: chunk at payload offset %d: a frame of %d bytes, the index says %d", ErrChunkHash, e.Offset, len(frame), e.FrameN)
	} else if raw = frame; e.Compressed() {
		if raw, err = d.dec.DecodeAll(frame, d.buf[:0]); err != nil {
			err = fmt.Errorf("%w: chunk at payload offset %d (store offset %d): %w", ErrChunkHash, e.Offset, e.Frame, err)
		}
	}
	if err == nil && len(raw) != e.Size {
		err = fmt.Errorf("%w: chunk at payload offset %d: %d bytes decoded, the index says %d", ErrChunkHash, e.Offset, len(raw), e.Size)
	}
	if err != nil {
		return nil, err
	}
	return raw, nil
}

// delta decodes e's delta frame against dict.
func (d *Decoder) delta(e Entry, dict, frame []byte) ([]byte, error) {
	if e.Delta == nil || len(frame) != e.Delta.FrameN || len(dict) != e.Delta.DictSize() {
		return nil, fmt.Errorf("%w: chunk at payload offset %d: a delta frame of %d bytes against %d, not the index's", ErrChunkHash, e.Offset, len(frame), len(dict))
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(zstdWindow(d.p.Max))), zstd.WithDecoderMaxMemory(uint64(d.p.Max)),
		zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderDictRaw(deltaDictID, dict))
	if err != nil {
		return nil, fmt.Errorf("adaptive: %w", err)
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(frame, d.buf[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: delta of the chunk at payload offset %d (store offset %d): %w", ErrChunkHash, e.Offset, e.Delta.Frame, err)
	}
	return raw, nil
}

// Verify checks that raw is e's chunk.
func Verify(e Entry, raw []byte) error {
	if len(raw) != e.Size || SumOf(raw) != e.Sum {
		return fmt.Errorf("%w: chunk at payload offset %d (%d bytes, store offset %d)", ErrChunkHash, e.Offset, e.Size, e.Frame)
	}
	return nil
}
