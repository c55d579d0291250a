package image

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"runtime"
	"sync"

	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/klauspost/compress/zstd"
)

// VerifyOptions say which keys a reader trusts and how large an image the target takes.
type VerifyOptions struct {
	// Keyring holds the trusted and revoked keys. Required.
	Keyring *Keyring
	// MaxRawSize, when > 0, refuses images whose raw payload is larger (ErrTooLarge): the size of
	// the slot the payload goes to. It also bounds the header a reader reads: its chunk table
	// cannot describe more than MaxRawSize bytes.
	MaxRawSize int64
	// MaxChunkSize, when > 0, refuses images whose chunk size is larger (ErrChunkTooLarge),
	// bounding the reader's memory (about two chunks) on small devices.
	MaxChunkSize int
	// MaxHeaderSize, when > 0, refuses headers larger (ErrHeaderTooLarge) from their fixed
	// part: the most a reader with little memory reads before it can check the signature,
	// where the target's size does not bound the chunk table (a large or unsized slot).
	MaxHeaderSize int
}

// ParseHeader reads and parses an image header from r WITHOUT checking its signature (for
// inspecting images). r is left at the first frame. Errors wrap ErrBadMagic,
// ErrUnsupportedVersion, ErrHeaderTooLarge, ErrMalformedHeader or ErrTruncated.
func ParseHeader(r io.Reader) (*Header, error) {
	fixed, h, err := readFixed(r)
	if err != nil {
		return nil, err
	}
	b, err := readRest(r, fixed, int(h.Size))
	if err != nil {
		return nil, err
	}
	return parseHeaderBytes(b)
}

// ReadHeader reads the header from r and verifies it: known, unrevoked key of the type the
// header names, valid signature, and the size limits of opts. r is left at the first frame.
// The returned header is Verified, so NewChunkReader accepts it.
//
// Nothing unsigned is parsed beyond the 104-byte fixed part: what can be refused from it (the
// key, the sizes) is refused before the rest of the header is read, and the signature is
// checked over the raw header bytes before the metadata and the chunk table are parsed.
func ReadHeader(r io.Reader, opts VerifyOptions) (*Header, error) {
	fixed, h, err := readFixed(r)
	if err != nil {
		return nil, err
	}
	pub, err := opts.admit(h)
	if err != nil {
		return nil, err
	}
	b, err := readRest(r, fixed, int(h.Size))
	if err != nil {
		return nil, err
	}
	if err := checkSignature(b, h, pub); err != nil {
		return nil, err
	}
	if h, err = parseHeaderBytes(b); err != nil {
		return nil, err
	}
	h.sealed = h.clone()
	return h, nil
}

// readFixed reads and checks the fixed part of the header: the 16-byte prefix first (magic,
// version, header size ≤ MaxHeaderSize), then the fields up to the metadata. It returns the
// bytes and the fields, which are not verified yet: they may refuse an image, never admit one.
func readFixed(r io.Reader) ([]byte, *Header, error) {
	b := make([]byte, fixedSize)
	n, err := io.ReadFull(r, b[:prefixSize])
	if n > 0 && !bytes.HasPrefix([]byte(Magic), b[:min(n, len(Magic))]) {
		return nil, nil, fmt.Errorf("%w: header offset 0: got % x, want % x", ErrBadMagic, b[:min(n, len(Magic))], Magic)
	}
	if err != nil {
		return nil, nil, headerReadErr(err, n, fmt.Sprintf("%d-byte header prefix", prefixSize))
	}
	if _, err := checkPrefix(b); err != nil {
		return nil, nil, err
	}
	if n, err := io.ReadFull(r, b[prefixSize:]); err != nil {
		return nil, nil, headerReadErr(err, prefixSize+n, fmt.Sprintf("%d-byte fixed part of the header", fixedSize))
	}
	h, _, _, err := parseFixed(b)
	if err != nil {
		return nil, nil, err
	}
	return b, h, nil
}

// readRest reads the header after its fixed part, up to size bytes in all. Its buffer grows
// fourfold from 64 KiB as the stream delivers, so a short stream announcing a large header costs
// little memory, and a whole header at most 4/3 of its size.
func readRest(r io.Reader, fixed []byte, size int) ([]byte, error) {
	b := fixed
	for len(b) < size {
		next := make([]byte, len(b), min(size, max(4*len(b), 64<<10)))
		copy(next, b)
		m, err := io.ReadFull(r, next[len(b):cap(next)])
		if err != nil {
			return nil, headerReadErr(err, len(b)+m, fmt.Sprintf("%d-byte header", size))
		}
		b = next[:cap(next)]
	}
	return b, nil
}

// headerReadErr is the error of a read of the header that stopped at offset at, inside what.
func headerReadErr(err error, at int, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the stream ends at byte %d, inside the %s", ErrTruncated, at, what)
	}
	return fmt.Errorf("aduimg: reading the header at offset %d: %w", at, err)
}

// admit refuses, from the fixed part h of a header, what the reader would refuse anyway: a key
// it does not trust, a key type that is not the key's, a payload or a chunk larger than the
// target takes. It returns the key to check the signature with.
func (o VerifyOptions) admit(h *Header) (crypto.PublicKey, error) {
	if o.Keyring == nil {
		return nil, fmt.Errorf("%w: no keyring to verify key id %s with", ErrUnknownKey, h.KeyID)
	}
	pub, err := o.Keyring.Lookup(h.KeyID)
	if err != nil {
		return nil, fmt.Errorf("aduimg: header offset 16 (key id): %w", err)
	}
	t, err := TypeOf(pub)
	if err != nil {
		return nil, err
	}
	if t != h.KeyType {
		return nil, fmt.Errorf("%w: header offset 32: the header names key type %s, but key id %s is a %s key", ErrBadSignature, h.KeyType, h.KeyID, t)
	}
	if o.MaxRawSize > 0 && h.RawSize > o.MaxRawSize {
		return nil, fmt.Errorf("%w: header offset 40: raw size %d exceeds the target's %d bytes", ErrTooLarge, h.RawSize, o.MaxRawSize)
	}
	if o.MaxHeaderSize > 0 && h.Size > int64(o.MaxHeaderSize) {
		return nil, fmt.Errorf("%w: header offset 12: header size %d exceeds this reader's limit of %d bytes (sign large images with larger chunks)",
			ErrHeaderTooLarge, h.Size, o.MaxHeaderSize)
	}
	if o.MaxChunkSize > 0 && h.ChunkSize > o.MaxChunkSize {
		return nil, fmt.Errorf("%w: header offset 36: chunk size %d exceeds this reader's limit of %d bytes", ErrChunkTooLarge, h.ChunkSize, o.MaxChunkSize)
	}
	return pub, nil
}

// checkSignature verifies the signature of the raw header b, whose fixed part is h, with pub.
func checkSignature(b []byte, h *Header, pub crypto.PublicKey) error {
	sig, err := parseSignature(b, h.KeyType)
	if err != nil {
		return err
	}
	if err := VerifyMessage(pub, b[:len(b)-sigBlockSize], sig); err != nil {
		return fmt.Errorf("aduimg: signature at header offset %d by key %s: %w", len(b)-SignatureSlotSize, h.KeyID, err)
	}
	return nil
}

// Reader streams the verified raw payload of an image. It hands out a chunk's bytes only after
// they matched the signed header; the last chunk only after the whole-payload SHA-256 (when
// reading from chunk 0) and the end of the stream (no trailing bytes) were checked too. Errors
// are sticky. A Reader is not safe for concurrent use.
type Reader struct {
	h     *Header // what Header returns
	v     *Header // private verified copy used for checks
	src   io.Reader
	next  int   // index of the next chunk to load
	off   int64 // image offset src is at
	buf   []byte
	cur   []byte // verified bytes of the current chunk not yet handed out
	frame []byte
	dec   *zstd.Decoder
	whole hash.Hash // nil when the reader started after chunk 0
	end   int64     // payload offset just past r.cur
	err   error
}

// NewReader reads and verifies the header from r (see ReadHeader) and returns a Reader of the
// whole raw payload that follows in r.
func NewReader(r io.Reader, opts VerifyOptions) (*Reader, error) {
	h, err := ReadHeader(r, opts)
	if err != nil {
		return nil, err
	}
	return NewChunkReader(h, r, 0)
}

// NewReaderAt verifies the header at offset 0 of ra and returns a Reader positioned at chunk
// first (0 ≤ first ≤ len(Chunks)), reading frames from ra at Chunks[first].Offset. It is how a
// resumed download or install skips chunks it already has.
func NewReaderAt(ra io.ReaderAt, first int, opts VerifyOptions) (*Reader, error) {
	h, err := ReadHeader(io.NewSectionReader(ra, 0, math.MaxInt64), opts)
	if err != nil {
		return nil, err
	}
	off, err := h.frameOffset(first)
	if err != nil {
		return nil, err
	}
	return NewChunkReader(h, io.NewSectionReader(ra, off, math.MaxInt64-off), first)
}

// frameOffset returns where chunk i's frame starts (the image size for i == len(Chunks)).
func (h *Header) frameOffset(i int) (int64, error) {
	v := h.verified()
	if i < 0 || i > len(v.Chunks) {
		return 0, fmt.Errorf("aduimg: chunk index %d is not in [0, %d]", i, len(v.Chunks))
	}
	if i == len(v.Chunks) {
		return v.ImageSize, nil
	}
	return v.Chunks[i].Offset, nil
}

// NewChunkReader returns a Reader of the raw payload from chunk first on (0 ≤ first ≤
// len(h.Chunks)); r must be positioned at h.Chunks[first].Offset of the image (or at its end when
// first == len(h.Chunks)), e.g. an HTTP body fetched with a Range from that offset. h must be
// Verified. When first > 0 the whole-payload hash cannot be checked; the chunk hashes still cover
// every byte the Reader returns.
func NewChunkReader(h *Header, r io.Reader, first int) (*Reader, error) {
	if h == nil || h.sealed == nil {
		return nil, errors.New("aduimg: NewChunkReader needs a verified header (from ReadHeader, NewReader or NewReaderAt)")
	}
	off, err := h.frameOffset(first)
	if err != nil {
		return nil, err
	}
	rd := &Reader{h: h, v: h.sealed, src: r, next: first, off: off, end: h.sealed.RawSize}
	if first < len(h.sealed.Chunks) {
		rd.end = h.sealed.Chunks[first].RawOffset
	}
	if first == 0 {
		rd.whole = sha256.New()
	}
	return rd, nil
}

// Header returns the verified header.
func (r *Reader) Header() *Header { return r.h }

// RawOffset returns the payload offset of the next byte Read returns.
func (r *Reader) RawOffset() int64 { return r.end - int64(len(r.cur)) }

// Read reads verified raw payload bytes. It returns io.EOF after the last byte, once the stream
// ended exactly after the last frame.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.load()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// WriteTo writes the rest of the verified payload to w, one chunk per Write.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		for len(r.cur) == 0 {
			if r.err == io.EOF {
				return total, nil
			}
			if r.err != nil {
				return total, r.err
			}
			r.load()
		}
		n, err := w.Write(r.cur)
		total += int64(n)
		r.cur = r.cur[n:]
		if err != nil {
			return total, err
		}
		if len(r.cur) != 0 {
			return total, io.ErrShortWrite
		}
	}
}

// ReadChunk reads the next chunk whole into p, which must hold it (Header.ChunkSize bytes
// do), and returns its size: the bytes Read would return up to the chunk's end (the rest of
// a chunk that Read handed out in part). It decodes and checks the chunk in p itself, without
// a copy, so that a consumer holding several buffers (a pipeline) writes one chunk while the
// Reader loads the next; unlike Read, it uses p as scratch space, so after an error p may
// hold unverified bytes: only p[:n] was verified. It returns io.EOF after the last chunk.
func (r *Reader) ReadChunk(p []byte) (int, error) {
	if len(r.cur) > 0 {
		n := copy(p, r.cur)
		r.cur = r.cur[n:]
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.next < len(r.v.Chunks) && len(p) < r.v.Chunks[r.next].RawSize {
		return 0, fmt.Errorf("aduimg: chunk %d has %d bytes, the buffer holds %d", r.next, r.v.Chunks[r.next].RawSize, len(p))
	}
	n := min(len(p), r.bufSize())
	raw := r.loadInto(p[:n:n]) // the decoder writes no further than a chunk
	if raw == nil {
		return 0, r.err
	}
	return len(raw), nil
}

// load verifies the next chunk into r.cur, or sets r.err (io.EOF at the end).
func (r *Reader) load() {
	if r.buf == nil {
		r.buf = make([]byte, r.bufSize())
	}
	r.cur = r.loadInto(r.buf)
}

// bufSize is the size of a buffer that holds any chunk (or frame) of the image.
func (r *Reader) bufSize() int { return int(min(int64(r.v.ChunkSize), r.v.RawSize)) }

// loadInto verifies the next chunk into dst and returns it, or sets r.err (io.EOF at the
// end, with or without the last chunk).
func (r *Reader) loadInto(dst []byte) []byte {
	if r.next == len(r.v.Chunks) {
		r.err = r.finish()
		r.release()
		return nil
	}
	raw, err := r.loadChunk(r.next, dst)
	if err == nil && r.next == len(r.v.Chunks)-1 {
		err = r.finish() // check the end before handing out the last chunk
		if err == io.EOF {
			err = nil
		}
	}
	if err != nil {
		r.err = err
		r.release()
		return nil
	}
	r.next++
	r.end += int64(len(raw))
	if r.next == len(r.v.Chunks) {
		r.err = io.EOF
		r.release()
	}
	return raw
}

func (r *Reader) release() {
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	r.frame = nil
}

// loadChunk reads chunk i's frame and decodes and checks it into dst, which holds the chunk.
func (r *Reader) loadChunk(i int, dst []byte) ([]byte, error) {
	c := r.v.Chunks[i]
	var in []byte
	if c.Compression == CompressNone {
		in = dst[:c.RawSize]
	} else {
		if r.frame == nil {
			r.frame = make([]byte, r.bufSize())
		}
		in = r.frame[:c.Length]
	}
	if n, err := io.ReadFull(r.src, in); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: the stream ends at image offset %d, %d bytes into the %d-byte frame of chunk %d (frame at offset %d)",
				ErrTruncated, r.off+int64(n), n, c.Length, i, c.Offset)
		}
		return nil, fmt.Errorf("aduimg: reading chunk %d at image offset %d: %w", i, r.off+int64(n), err)
	}
	r.off += int64(c.Length)
	raw := in
	if c.Compression == CompressZstd {
		if r.dec == nil {
			d, err := newDecoder(r.v.ChunkSize)
			if err != nil {
				return nil, fmt.Errorf("aduimg: zstd decoder: %w", err)
			}
			r.dec = d
		}
		out, err := r.dec.DecodeAll(in, dst[:0])
		if err != nil {
			return nil, &ChunkError{Index: i, Offset: c.RawOffset, FrameOffset: c.Offset, Err: err, reason: "zstd frame does not decode"}
		}
		if len(out) != c.RawSize || &out[0] != &dst[0] {
			return nil, &ChunkError{Index: i, Offset: c.RawOffset, FrameOffset: c.Offset,
				reason: fmt.Sprintf("zstd frame decodes to %d bytes, want %d", len(out), c.RawSize)}
		}
		raw = out
	}
	// If the chunk is bad the reader stops: what the whole-payload hash took does not matter.
	if err := r.v.VerifyChunkHashing(i, raw, r.whole); err != nil {
		var ce *ChunkError
		if errors.As(err, &ce) {
			ce.FrameOffset = c.Offset
		}
		return nil, err
	}
	return raw, nil
}

// finish checks the whole-payload hash and that the stream ends after the last frame.
// It returns io.EOF when all is well.
func (r *Reader) finish() error {
	if r.whole != nil {
		if Digest(r.whole.Sum(nil)) != r.v.PayloadSHA256 {
			return fmt.Errorf("%w: the chunks match, but the payload's SHA-256 is not the header's %s", ErrPayloadHash, r.v.PayloadSHA256)
		}
	}
	var one [1]byte
	n, err := io.ReadFull(r.src, one[:])
	if n > 0 {
		return fmt.Errorf("%w: at image offset %d (the image ends at %d)", ErrTrailingData, r.off, r.v.ImageSize)
	}
	if err != io.EOF {
		return fmt.Errorf("aduimg: checking for the end of the image at offset %d: %w", r.off, err)
	}
	return io.EOF
}

// Verify reads a whole image from r, checking the header signature, every chunk, the payload
// hash and the end of the stream; it returns the verified header.
func Verify(r io.Reader, opts VerifyOptions) (*Header, error) {
	rd, err := NewReader(r, opts)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return nil, err
	}
	return rd.Header(), nil
}

// ChunkError reports a chunk whose bytes are not the ones the header signs. errors.Is(err,
// ErrChunkHash) is true for it; Err, when not nil, is the decoder's error.
type ChunkError struct {
	Index       int   // chunk index
	Offset      int64 // offset of the chunk in the raw payload
	FrameOffset int64 // offset of its frame in the image (-1 when not from an image stream)
	Err         error
	reason      string
}

func (e *ChunkError) Error() string {
	s := fmt.Sprintf("aduimg: chunk %d (payload offset %d", e.Index, e.Offset)
	if e.FrameOffset >= 0 {
		s += fmt.Sprintf(", frame at image offset %d", e.FrameOffset)
	}
	s += "): " + e.reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is ErrChunkHash.
func (e *ChunkError) Is(target error) bool { return target == ErrChunkHash }

// ErrorKind says that a chunk that does not match is a verdict on the input.
func (e *ChunkError) ErrorKind() errkind.Kind { return errkind.Input }

// Unwrap returns the decoder error, if any.
func (e *ChunkError) Unwrap() error { return e.Err }

func (h *Header) verified() *Header {
	if h.sealed != nil {
		return h.sealed
	}
	return h
}

// VerifyChunk checks that raw is chunk i of the payload (its size and SHA-256), e.g. to find out
// after a power cut which chunks already in the slot are good. For a Verified header it checks
// against the values the signature covered. A mismatch is a *ChunkError (ErrChunkHash).
func (h *Header) VerifyChunk(i int, raw []byte) error {
	c, err := h.chunkSized(i, len(raw))
	if err != nil {
		return err
	}
	return chunkHashed(i, c, sha256.Sum256(raw))
}

// chunkSized returns chunk i as the signature covered it, when n is its size.
func (h *Header) chunkSized(i, n int) (Chunk, error) {
	v := h.verified()
	if i < 0 || i >= len(v.Chunks) {
		return Chunk{}, fmt.Errorf("aduimg: chunk index %d is not in [0, %d)", i, len(v.Chunks))
	}
	c := v.Chunks[i]
	if n != c.RawSize {
		return Chunk{}, &ChunkError{Index: i, Offset: c.RawOffset, FrameOffset: -1, reason: fmt.Sprintf("%d bytes given, the chunk has %d", n, c.RawSize)}
	}
	return c, nil
}

// chunkHashed checks that d is the SHA-256 of chunk i (c).
func chunkHashed(i int, c Chunk, d Digest) error {
	if d != c.SHA256 {
		return &ChunkError{Index: i, Offset: c.RawOffset, FrameOffset: -1, reason: "SHA-256 does not match the header"}
	}
	return nil
}

// VerifyChunkHashing is VerifyChunk, with raw written to whole (the payload's hash so far;
// nil: none) alongside, on another core for a large chunk (joined before it returns, so no
// goroutine outlives the call). whole takes raw even when the chunk does not match.
func (h *Header) VerifyChunkHashing(i int, raw []byte, whole hash.Hash) error {
	var wg sync.WaitGroup
	if whole != nil {
		if len(raw) >= 64<<10 {
			wg.Go(func() { whole.Write(raw) })
		} else {
			whole.Write(raw)
		}
	}
	err := h.VerifyChunk(i, raw)
	wg.Wait()
	return err
}

// zstd settings shared by the writer and the reader.

// zstdWindow is the window the writer uses: the largest power of two ≤ min(chunk size, 8 MiB).
func zstdWindow(chunkSize int) int {
	w := 1
	for w*2 <= min(chunkSize, MaxZstdWindow) {
		w *= 2
	}
	return w
}

// newDecoder returns a decoder for one chunk at a time: one goroutine-free decoder, low memory,
// window ≤ min(chunk size, 8 MiB), output capped at the chunk size.
func newDecoder(chunkSize int) (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(min(chunkSize, MaxZstdWindow))),
		zstd.WithDecoderMaxMemory(uint64(chunkSize)),
		zstd.WithDecodeAllCapLimit(true),
	)
}

// VerifyAt reads every chunk of the payload back from ra (e.g. a slot, at payload offsets) and
// checks it against the header. The reads go in order, one at a time (a slot's ReadAt need
// not be safe for concurrent use); the hashing runs beside them on up to two cores, each
// holding a chunk, as long as the chunks fit in verifyMemory (three 1 MiB chunks, two of
// 2 MiB; larger chunks are read and hashed in turn, in one). The first chunk that does not
// match is a *ChunkError (ErrChunkHash), as a read of the chunks in turn would find it.
func (h *Header) VerifyAt(ra io.ReaderAt) error {
	v := h.verified()
	chunk := int(min(int64(v.ChunkSize), v.RawSize))
	hashers := min(runtime.GOMAXPROCS(0), 2, len(v.Chunks), verifyMemory/max(chunk, 1)-1)
	if hashers < 1 {
		buf := make([]byte, 0, min(int64(v.ChunkSize), v.RawSize))
		for i := range v.Chunks {
			if err := h.verifyChunkAt(ra, i, buf); err != nil {
				return err
			}
		}
		return nil
	}
	return h.verifyAtParallel(ra, hashers)
}

// verifyMemory bounds the buffers of VerifyAt when it reads and hashes side by side.
const verifyMemory = 4 << 20

// verifyChunkAt reads chunk i back from ra into buf's memory and checks it.
func (h *Header) verifyChunkAt(ra io.ReaderAt, i int, buf []byte) error {
	c := h.verified().Chunks[i]
	buf = buf[:c.RawSize]
	if err := readChunkAt(ra, buf, c.RawOffset); err != nil {
		return fmt.Errorf("aduimg: reading chunk %d back at payload offset %d: %w", i, c.RawOffset, err)
	}
	return h.VerifyChunk(i, buf)
}

// verifyAtParallel is VerifyAt with the reads in this goroutine and the hashes in hashers
// others, hashers+1 buffers going round; the error is the one of the lowest chunk that
// failed. Reading stops at a failed read, and once a bad chunk is found.
func (h *Header) verifyAtParallel(ra io.ReaderAt, hashers int) error {
	v := h.verified()
	type job struct {
		i   int
		buf []byte
	}
	jobs, free := make(chan job), make(chan []byte, hashers+1)
	for range hashers + 1 {
		free <- make([]byte, min(int64(v.ChunkSize), v.RawSize))
	}
	var mu sync.Mutex
	bad, badErr := len(v.Chunks), error(nil)
	fail := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if i < bad {
			bad, badErr = i, err
		}
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return bad < len(v.Chunks)
	}
	var wg sync.WaitGroup
	for range hashers {
		wg.Go(func() {
			for j := range jobs {
				if err := h.VerifyChunk(j.i, j.buf[:v.Chunks[j.i].RawSize]); err != nil {
					fail(j.i, err)
				}
				free <- j.buf
			}
		})
	}
	for i, c := range v.Chunks {
		buf := <-free
		if failed() {
			break
		}
		if err := readChunkAt(ra, buf[:c.RawSize], c.RawOffset); err != nil {
			fail(i, fmt.Errorf("aduimg: reading chunk %d back at payload offset %d: %w", i, c.RawOffset, err))
			break
		}
		jobs <- job{i, buf}
	}
	close(jobs)
	wg.Wait()
	return badErr
}

// FirstBadChunkAt returns the index of the first chunk of the payload that ra does not hold
// (len(Chunks) when all are good), e.g. to find out where to resume without a cursor.
func (h *Header) FirstBadChunkAt(ra io.ReaderAt) int {
	v := h.verified()
	buf := make([]byte, 0, min(int64(v.ChunkSize), v.RawSize))
	for i := range v.Chunks {
		if h.verifyChunkAt(ra, i, buf) != nil {
			return i
		}
	}
	return len(v.Chunks)
}

// readChunkAt fills buf from ra at off. A read that returns fewer bytes without saying why
// (a device that lies, or breaks the io.ReaderAt contract) is io.ErrUnexpectedEOF, so the
// chunk is never checked with what an earlier read left in buf.
func readChunkAt(ra io.ReaderAt, buf []byte, off int64) error {
	n, err := ra.ReadAt(buf, off)
	switch {
	case n == len(buf):
		return nil // io.EOF after a full read is fine
	case err == nil || err == io.EOF:
		return fmt.Errorf("%w: %d of %d bytes at %d", io.ErrUnexpectedEOF, n, len(buf), off)
	}
	return err
}
