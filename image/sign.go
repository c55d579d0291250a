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
	if key == nil {
		return nil, 0, fmt.Errorf("%w: no signing key", ErrBadKey)
	}
	kt, err := TypeOf(key.Public())
	if err != nil {
		return nil, 0, err
	}
	id, err := KeyIDOf(key.Public())
	if err != nil {
		return nil, 0, err
	}
	if size < 0 {
		return nil, 0, fmt.Errorf("%w: payload size %d is negative", ErrInvalidOption, size)
	}
	cs := opts.ChunkSize
	if cs == 0 {
		cs = DefaultChunkSize
	}
	if cs < 0 {
		return nil, 0, fmt.Errorf("%w: chunk size %d is negative", ErrInvalidOption, cs)
	}
	if err := checkChunkSize(uint64(cs)); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	if opts.Compression > CompressZstd {
		return nil, 0, fmt.Errorf("%w: unknown compression %d", ErrInvalidOption, uint8(opts.Compression))
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	created = created.Truncate(time.Second).UTC()
	if created.Unix() < 0 || created.Unix() > maxCreated {
		return nil, 0, fmt.Errorf("%w: creation time %s is not in 1970..9999", ErrInvalidOption, created)
	}
	workers := opts.Concurrency
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	meta, err := encodeMetadata(opts.Version, opts.SlotClass, opts.Compatibility, opts.Meta)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrInvalidOption, err)
	}
	n := chunkCountFor(uint64(size), uint64(cs))
	hs := headerSize(len(meta), n)
	if hs > MaxHeaderSize {
		return nil, 0, fmt.Errorf("%w: %d bytes in chunks of %d need a %d-byte header, more than %d; use a larger chunk size",
			ErrHeaderTooLarge, size, cs, hs, MaxHeaderSize)
	}

	h := &Header{
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
	}
	p := pipeline{out: out, payload: payload, size: size, chunkSize: cs, headerSize: int64(hs),
		comp: opts.Compression, workers: workers, chunks: make([]Chunk, n)}
	if err := p.run(); err != nil {
		return nil, 0, err
	}
	h.Chunks = p.chunks
	h.PayloadSHA256 = p.sum
	h.ImageSize = p.end

	signed, err := marshalSigned(h, meta)
	if err != nil {
		return nil, 0, err
	}
	if int64(len(signed)+sigBlockSize) != h.Size {
		return nil, 0, fmt.Errorf("aduimg: internal error: header is %d bytes, %d were reserved", len(signed)+sigBlockSize, h.Size)
	}
	sig, err := SignMessage(key, signed)
	if err != nil {
		return nil, 0, fmt.Errorf("aduimg: signing the header with key %s: %w", id, err)
	}
	if ok, want := sigLenOK(kt, len(sig)); !ok {
		return nil, 0, fmt.Errorf("aduimg: the %s key made a %d-byte signature, want %s", kt, len(sig), want)
	}
	if err := VerifyMessage(key.Public(), signed, sig); err != nil {
		return nil, 0, fmt.Errorf("aduimg: the key's own signature does not verify: %w", err)
	}
	hdr := appendSigBlock(signed, sig)
	// Parse what we wrote: the header we return is exactly what a reader will see.
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

func (p *pipeline) run() error {
	n := len(p.chunks)
	p.stop = make(chan struct{})
	nslots := min(2*p.workers+2, max(n, 1))
	free := make(chan *slot, nslots)
	for range nslots {
		free <- &slot{}
	}
	release := func(j *job) {
		if j.refs.Add(-1) == 0 {
			free <- j.s // never blocks: at most nslots slots exist
		}
	}

	var enc *zstd.Encoder
	if p.comp == CompressZstd {
		var err error
		enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderConcurrency(p.workers),
			zstd.WithWindowSize(zstdWindow(p.chunkSize)),
			zstd.WithEncoderCRC(false), // the chunk's SHA-256 covers it
			zstd.WithZeroFrames(false),
		)
		if err != nil {
			return fmt.Errorf("aduimg: zstd encoder: %w", err)
		}
		defer enc.Close()
	}

	// Every channel can hold every job in flight, so no send blocks.
	work := make(chan *job, nslots)
	hashq := make(chan *job, nslots)
	done := make(chan *job, nslots)
	var wg sync.WaitGroup

	// Reader: cut the payload into chunks.
	wg.Go(func() {
		defer close(work)
		defer close(hashq)
		bufSize := int(min(int64(p.chunkSize), p.size))
		var read int64
		for i := 0; i < n; i++ {
			var s *slot
			select {
			case s = <-free:
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
			hashq <- j
			work <- j
		}
		var one [1]byte
		m, err := io.ReadFull(p.payload, one[:])
		switch {
		case m > 0:
			p.fail(fmt.Errorf("%w: the payload is longer than the %d bytes announced", ErrPayloadSize, p.size))
		case err != io.EOF:
			p.fail(fmt.Errorf("aduimg: reading the payload at offset %d: %w", read, err))
		}
	})

	// Hasher: the whole-payload SHA-256, in order, alongside the workers.
	wholeDone := make(chan Digest, 1)
	wg.Go(func() {
		hw := sha256.New()
		for j := range hashq {
			if !p.stopped() {
				hw.Write(j.raw)
			}
			release(j)
		}
		wholeDone <- Digest(hw.Sum(nil))
	})

	// Workers: chunk hash and compression.
	frameCap := p.chunkSize + p.chunkSize>>7 + 1024 // above zstd's bound for incompressible input
	for range p.workers {
		wg.Go(func() {
			for j := range work {
				if p.stopped() {
					release(j)
					continue
				}
				j.sum = sha256.Sum256(j.raw)
				if enc != nil {
					if j.s.frame == nil {
						j.s.frame = make([]byte, 0, min(frameCap, int(p.size)+1024))
					}
					f := enc.EncodeAll(j.raw, j.s.frame[:0])
					j.s.frame = f[:0] // keep the buffer, should EncodeAll have grown it
					if len(f) < len(j.raw) {
						j.frame = f // else zstd does not help: store the chunk raw
					}
				}
				done <- j
			}
		})
	}

	// Writer: frames in chunk order.
	pending := make(map[int]*job, nslots)
	off := p.headerSize
	next := 0
loop:
	for next < n {
		select {
		case j := <-done:
			pending[j.idx] = j
		case <-p.stop:
			break loop
		}
		for {
			j, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			data, comp := j.raw, CompressNone
			if j.frame != nil {
				data, comp = j.frame, CompressZstd
			}
			if _, err := p.out.WriteAt(data, off); err != nil {
				p.fail(fmt.Errorf("aduimg: writing chunk %d's frame at image offset %d: %w", next, off, err))
				release(j)
				break loop
			}
			p.chunks[next] = Chunk{Index: next, RawOffset: int64(next) * int64(p.chunkSize), RawSize: len(j.raw),
				SHA256: j.sum, Offset: off, Length: len(data), Compression: comp}
			off += int64(len(data))
			next++
			release(j)
		}
	}
	// Drain: on failure, hand back what is still pending or arrives, so nothing blocks.
	for _, j := range pending {
		release(j)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for j := range done {
			release(j)
		}
	}()
	wg.Wait()
	close(done)
	<-drained
	if p.err != nil {
		return p.err
	}
	p.sum = <-wholeDone
	p.end = off
	return nil
}
