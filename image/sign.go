package image

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// SignOptions describe the image Sign makes.
type SignOptions struct {
	Version         string            // update version (required, 1..255 bytes)
	SlotClass       string            // slot class the payload is for, e.g. "rootfs" (optional)
	Compatibility   map[string]string // device properties the image is for (optional)
	Meta            map[string]string // free-form key/values (optional)
	SecurityCounter uint64            // devices refuse images below their counter (Header.CheckDowngrade)
	ChunkSize       int               // raw bytes per chunk; 0: DefaultChunkSize
	Compression     Compression       // CompressNone or CompressZstd
	Created         time.Time         // zero: time.Now(); stored in whole seconds
	Concurrency     int               // compress/hash workers; 0: runtime.GOMAXPROCS(0)
}

// Sign reads exactly size bytes from payload (and checks that it ends there) and writes a
// complete signed image to out, starting at offset 0: it reserves the header's exact size,
// writes the frames after it in order, then writes the signed header. It returns the header
// and the image size. If out has a Truncate(int64) error method (an *os.File does), Sign
// truncates it to the image size, so signing over an old, longer file leaves no trailing bytes.
//
// Memory stays bounded whatever the size: about (2×Concurrency+2) chunk buffers (twice that
// with zstd), plus 48 bytes per chunk for the header. Chunks are hashed (and compressed) by
// Concurrency workers while one more goroutine computes the whole-payload SHA-256; out.WriteAt
// is never called concurrently.
func Sign(out io.WriterAt, payload io.Reader, size int64, key crypto.Signer, opts SignOptions) (*Header, int64, error) {
	h, meta, err := newHeader(key, size, opts)
	if err != nil {
		return nil, 0, err
	}
	workers := opts.Concurrency
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	p := pipeline{out: out, payload: payload, size: size, chunkSize: h.ChunkSize, headerSize: h.Size,
		comp: h.Compression, workers: workers, chunks: make([]Chunk, chunkCountFor(uint64(size), uint64(h.ChunkSize)))}
	if err := p.run(); err != nil {
		return nil, 0, err
	}
	h.Chunks, h.PayloadSHA256, h.ImageSize = p.chunks, p.sum, p.end
	hdr, err := signHeader(h, meta, key)
	if err != nil {
		return nil, 0, err
	}
	return writeHeader(out, hdr)
}

// newHeader checks the key and the options and returns the header of a size-byte payload,
// its size reserved but its chunks, payload hash and image size not known yet, and its
// encoded metadata.
func newHeader(key crypto.Signer, size int64, opts SignOptions) (*Header, []byte, error) {
	if key == nil {
		return nil, nil, fmt.Errorf("%w: no signing key", ErrBadKey)
	}
	kt, err := TypeOf(key.Public())
	if err != nil {
		return nil, nil, err
	}
	id, err := KeyIDOf(key.Public())
	if err != nil {
		return nil, nil, err
	}
	if size < 0 {
		return nil, nil, fmt.Errorf("%w: payload size %d is negative", ErrInvalidOption, size)
	}
	cs, err := signChunkSize(opts.ChunkSize)
	if err != nil {
		return nil, nil, err
	}
	if opts.Compression > CompressZstd {
		return nil, nil, fmt.Errorf("%w: unknown compression %d", ErrInvalidOption, uint8(opts.Compression))
	}
	created, err := signCreated(opts.Created)
	if err != nil {
		return nil, nil, err
	}
	meta, err := encodeMetadata(opts.Version, opts.SlotClass, opts.Compatibility, opts.Meta)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	hs := headerSize(len(meta), chunkCountFor(uint64(size), uint64(cs)))
	if hs > MaxHeaderSize {
		return nil, nil, fmt.Errorf("%w: %d bytes in chunks of %d need a %d-byte header, more than %d; use a larger chunk size",
			ErrHeaderTooLarge, size, cs, hs, MaxHeaderSize)
	}
	return &Header{
		FormatVersion:   FormatVersion,
		Size:            int64(hs),
		KeyID:           id,
		KeyType:         kt,
		Version:         opts.Version,
		SlotClass:       opts.SlotClass,
		Compatibility:   opts.Compatibility,
		Meta:            opts.Meta,
		SecurityCounter: opts.SecurityCounter,
		Created:         created,
		Compression:     opts.Compression,
		ChunkSize:       cs,
		RawSize:         size,
	}, meta, nil
}

// signChunkSize checks SignOptions.ChunkSize (0: DefaultChunkSize).
func signChunkSize(cs int) (int, error) {
	if cs == 0 {
		cs = DefaultChunkSize
	}
	if cs < 0 {
		return 0, fmt.Errorf("%w: chunk size %d is negative", ErrInvalidOption, cs)
	}
	if err := checkChunkSize(uint64(cs)); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	return cs, nil
}

// signCreated is SignOptions.Created (zero: now) in whole seconds, UTC, checked to be a
// time the header can hold.
func signCreated(created time.Time) (time.Time, error) {
	if created.IsZero() {
		created = time.Now()
	}
	created = created.Truncate(time.Second).UTC()
	if created.Unix() < 0 || created.Unix() > maxCreated {
		return time.Time{}, fmt.Errorf("%w: creation time %s is not in 1970..9999", ErrInvalidOption, created)
	}
	return created, nil
}

// signHeader encodes the complete header h (with meta) and signs it with key: the bytes to
// write at offset 0, exactly the size reserved for them. The key's own signature is verified
// before it is used.
func signHeader(h *Header, meta []byte, key crypto.Signer) ([]byte, error) {
	signed, err := marshalSigned(h, meta)
	if err != nil {
		return nil, err
	}
	if int64(len(signed)+sigBlockSize) != h.Size {
		return nil, fmt.Errorf("aduimg: internal error: header is %d bytes, %d were reserved", len(signed)+sigBlockSize, h.Size)
	}
	sig, err := SignMessage(key, signed)
	if err != nil {
		return nil, fmt.Errorf("aduimg: signing the header with key %s: %w", h.KeyID, err)
	}
	if ok, want := sigLenOK(h.KeyType, len(sig)); !ok {
		return nil, fmt.Errorf("aduimg: the %s key made a %d-byte signature, want %s", h.KeyType, len(sig), want)
	}
	if err := VerifyMessage(key.Public(), signed, sig); err != nil {
		return nil, fmt.Errorf("aduimg: the key's own signature does not verify: %w", err)
	}
	return appendSigBlock(signed, sig), nil
}

// writeHeader writes the signed header hdr at offset 0 of out and truncates out to the
// image size if it can. It returns the header as a reader will parse it, and the image size.
func writeHeader(out io.WriterAt, hdr []byte) (*Header, int64, error) {
	parsed, err := parseHeaderBytes(hdr)
	if err != nil {
		return nil, 0, fmt.Errorf("aduimg: internal error: the header written does not parse: %w", err)
	}
	if _, err := out.WriteAt(hdr, 0); err != nil {
		return nil, 0, fmt.Errorf("aduimg: writing the header: %w", err)
	}
	if t, ok := out.(interface{ Truncate(int64) error }); ok {
		if err := t.Truncate(parsed.ImageSize); err != nil {
			return nil, 0, fmt.Errorf("aduimg: truncating the output to %d bytes: %w", parsed.ImageSize, err)
		}
	}
	return parsed, parsed.ImageSize, nil
}

// pipeline cuts the payload into chunks and writes their frames:
//
//	reader goroutine ──► workers (chunk SHA-256, zstd) ──► this goroutine: frames in order ──► out
//	                 └─► hasher goroutine (whole-payload SHA-256)
//
// A fixed set of slots (raw buffer + frame buffer) bounds memory; a slot returns to the free
// list when both the hasher and the frame writer are done with it.
type pipeline struct {
	out        io.WriterAt
	payload    io.Reader
	size       int64
	chunkSize  int
	headerSize int64
	comp       Compression
	workers    int

	chunks []Chunk
	sum    Digest
	end    int64

	// Set up by start: the slots and the channels between the stages. Every channel can
	// hold every job in flight, so no send blocks.
	free      chan *slot  // slots not in use
	work      chan *job   // reader → workers
	hashq     chan *job   // reader → hasher
	done      chan *job   // workers → writer
	wholeDone chan Digest // hasher → run
	enc       *zstd.Encoder

	stop    chan struct{}
	errOnce sync.Once
	err     error
}

type slot struct {
	raw   []byte
	frame []byte
}

type job struct {
	idx   int
	s     *slot
	raw   []byte // s.raw[:chunk length]
	sum   Digest
	frame []byte // zstd frame, or nil: stored raw
	refs  atomic.Int32
}

func (p *pipeline) fail(err error) {
	p.errOnce.Do(func() {
		p.err = err
		close(p.stop)
	})
}

func (p *pipeline) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

func (p *pipeline) rawLen(i int) int {
	return int(min(int64(p.chunkSize), p.size-int64(i)*int64(p.chunkSize)))
}

// run signs the payload in chunks: the reader, the hasher and the workers run on their own
// goroutines while this one writes the frames in order; on failure everything still in
// flight is handed back before run returns the first error.
func (p *pipeline) run() error {
	if err := p.start(); err != nil {
		return err
	}
	if p.enc != nil {
		defer p.enc.Close()
	}
	var wg sync.WaitGroup
	wg.Go(p.read)
	wg.Go(p.hashWhole)
	for range p.workers {
		wg.Go(p.compress)
	}
	off, pending := p.writeFrames()
	p.drain(&wg, pending)
	if p.err != nil {
		return p.err
	}
	p.sum = <-p.wholeDone
	p.end = off
	return nil
}

// start makes the slots (two per worker and two more, at most one per chunk), the channels
// and, for zstd, the encoder.
func (p *pipeline) start() error {
	p.stop = make(chan struct{})
	nslots := min(2*p.workers+2, max(len(p.chunks), 1))
	p.free = make(chan *slot, nslots)
	for range nslots {
		p.free <- &slot{}
	}
	p.work = make(chan *job, nslots)
	p.hashq = make(chan *job, nslots)
	p.done = make(chan *job, nslots)
	p.wholeDone = make(chan Digest, 1)
	if p.comp != CompressZstd {
		return nil
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(p.workers),
		zstd.WithWindowSize(zstdWindow(p.chunkSize)),
		zstd.WithEncoderCRC(false), // the chunk's SHA-256 covers it
		zstd.WithZeroFrames(false),
	)
	if err != nil {
		return fmt.Errorf("aduimg: zstd encoder: %w", err)
	}
	p.enc = enc
	return nil
}

// release drops one of a job's two users (hasher, writer); the last one frees its slot.
func (p *pipeline) release(j *job) {
	if j.refs.Add(-1) == 0 {
		p.free <- j.s // never blocks: at most cap(free) slots exist
	}
}

// read cuts the payload into chunks, each into a free slot, and hands each to the hasher
// and the workers; it fails the pipeline if the payload is shorter or longer than announced.
func (p *pipeline) read() {
	defer close(p.work)
	defer close(p.hashq)
	bufSize := int(min(int64(p.chunkSize), p.size))
	var read int64
	for i := range len(p.chunks) {
		var s *slot
		select {
		case s = <-p.free:
		case <-p.stop:
			return
		}
		if s.raw == nil {
			s.raw = make([]byte, bufSize)
		}
		l := p.rawLen(i)
		m, err := io.ReadFull(p.payload, s.raw[:l])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				p.fail(fmt.Errorf("%w: the payload ended after %d bytes, %d were announced", ErrPayloadSize, read+int64(m), p.size))
			} else {
				p.fail(fmt.Errorf("aduimg: reading the payload at offset %d: %w", read+int64(m), err))
			}
			return
		}
		read += int64(l)
		j := &job{idx: i, s: s, raw: s.raw[:l]}
		j.refs.Store(2)
		p.hashq <- j
		p.work <- j
	}
	p.checkEnd(read)
}

// checkEnd fails the pipeline unless the payload ends after the read bytes.
func (p *pipeline) checkEnd(read int64) {
	var one [1]byte
	m, err := io.ReadFull(p.payload, one[:])
	switch {
	case m > 0:
		p.fail(fmt.Errorf("%w: the payload is longer than the %d bytes announced", ErrPayloadSize, p.size))
	case err != io.EOF:
		p.fail(fmt.Errorf("aduimg: reading the payload at offset %d: %w", read, err))
	}
}

// hashWhole computes the whole-payload SHA-256, in chunk order, alongside the workers.
func (p *pipeline) hashWhole() {
	hw := sha256.New()
	for j := range p.hashq {
		if !p.stopped() {
			hw.Write(j.raw)
		}
		p.release(j)
	}
	p.wholeDone <- Digest(hw.Sum(nil))
}

// compress is a worker: it hashes each chunk and, with zstd, compresses it into its slot's
// frame buffer (keeping the frame only when it is smaller than the chunk).
func (p *pipeline) compress() {
	frameCap := p.chunkSize + p.chunkSize>>7 + 1024 // above zstd's bound for incompressible input
	for j := range p.work {
		if p.stopped() {
			p.release(j)
			continue
		}
		j.sum = sha256.Sum256(j.raw)
		if p.enc != nil {
			if j.s.frame == nil {
				j.s.frame = make([]byte, 0, min(frameCap, int(p.size)+1024))
			}
			f := p.enc.EncodeAll(j.raw, j.s.frame[:0])
			j.s.frame = f[:0] // keep the buffer, should EncodeAll have grown it
			if len(f) < len(j.raw) {
				j.frame = f // else zstd does not help: store the chunk raw
			}
		}
		p.done <- j
	}
}

// writeFrames writes the frames in chunk order after the header and records each chunk's
// entry. It returns the image offset after the last frame written, and the jobs that arrived
// but were not written when the pipeline stopped.
func (p *pipeline) writeFrames() (int64, map[int]*job) {
	pending := make(map[int]*job, cap(p.free))
	off := p.headerSize
	for next := 0; next < len(p.chunks); {
		select {
		case j := <-p.done:
			pending[j.idx] = j
		case <-p.stop:
			return off, pending
		}
		for j, ok := pending[next]; ok; j, ok = pending[next] {
			delete(pending, next)
			n, err := p.writeFrame(j, off)
			if err != nil {
				p.fail(err)
				p.release(j)
				return off, pending
			}
			off += n
			next++
			p.release(j)
		}
	}
	return off, pending
}

// writeFrame writes job j's frame (its zstd frame, or the chunk raw) at image offset off and
// records its chunk entry; it returns the frame's length.
func (p *pipeline) writeFrame(j *job, off int64) (int64, error) {
	data, comp := j.raw, CompressNone
	if j.frame != nil {
		data, comp = j.frame, CompressZstd
	}
	if _, err := p.out.WriteAt(data, off); err != nil {
		return 0, fmt.Errorf("aduimg: writing chunk %d's frame at image offset %d: %w", j.idx, off, err)
	}
	p.chunks[j.idx] = Chunk{Index: j.idx, RawOffset: int64(j.idx) * int64(p.chunkSize), RawSize: len(j.raw),
		SHA256: j.sum, Offset: off, Length: len(data), Compression: comp}
	return int64(len(data)), nil
}

// drain waits for the reader, hasher and workers, handing back on the way (after a failure)
// the pending jobs and whatever the workers still send, so that no stage blocks.
func (p *pipeline) drain(wg *sync.WaitGroup, pending map[int]*job) {
	for _, j := range pending {
		p.release(j)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for j := range p.done {
			p.release(j)
		}
	}()
	wg.Wait()
	close(p.done)
	<-drained
}
