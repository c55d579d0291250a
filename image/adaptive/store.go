package adaptive

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/aduflash/aduflash/image"
)

// IndexImage verifies the aduimg image read from img with kr (its signature, every chunk) and
// builds its index with p, writing the store: what aduimport index does.
func IndexImage(img io.Reader, kr *image.Keyring, p Params, store io.Writer) (*Index, error) {
	rd, err := image.NewReader(img, image.VerifyOptions{Keyring: kr})
	if err != nil {
		return nil, err
	}
	return Build(rd.Header(), rd, p, store)
}

// Build cuts the payload of the verified image h (read from payload) into chunks with p and
// writes the store: its header, then each chunk's frame at its first occurrence (zstd, or its
// bytes where zstd would not make it smaller). It returns the index of what it wrote.
func Build(h *image.Header, payload io.Reader, p Params, store io.Writer) (*Index, error) {
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
	x := &Index{Params: p, RawSize: h.RawSize, PayloadSHA256: h.PayloadSHA256, HeaderSHA256: sha256.Sum256(hdr), HeaderSize: int64(len(hdr))}
	w := bufio.NewWriterSize(store, 1<<20)
	head := make([]byte, StoreHeader)
	copy(head, StoreMagic)
	head[8] = 1
	if _, err := w.Write(head); err != nil {
		return nil, err
	}
	frame := int64(StoreHeader)
	first := map[image.Digest]Entry{}
	var buf []byte
	err = p.Split(payload, func(off int64, chunk []byte) error {
		e := Entry{SHA256: sha256.Sum256(chunk), Offset: off, Size: len(chunk)}
		if f, seen := first[e.SHA256]; seen {
			e.Frame, e.FrameN, e.Repeats = f.Frame, f.FrameN, true
			x.Entries = append(x.Entries, e)
			return nil
		}
		buf = enc.EncodeAll(chunk, buf[:0])
		out := buf
		if len(buf) >= len(chunk) {
			out = chunk
		}
		e.Frame, e.FrameN = frame, len(out)
		frame += int64(len(out))
		first[e.SHA256] = e
		x.Entries = append(x.Entries, e)
		_, err := w.Write(out)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	x.StoreSize = frame
	if n := sumSizes(x.Entries); n != h.RawSize {
		return nil, fmt.Errorf("%w: the payload read has %d bytes, the image %d", ErrMalformed, n, h.RawSize)
	}
	return x, nil
}

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
	return &Decoder{dec: d, buf: make([]byte, 0, p.Max)}, nil
}

// Close releases the decoder.
func (d *Decoder) Close() { d.dec.Close() }

// Chunk returns the bytes e's frame holds (valid until the next call), or an error wrapping
// ErrChunkHash when they are not e's chunk.
func (d *Decoder) Chunk(e Entry, frame []byte) ([]byte, error) {
	if len(frame) != e.FrameN {
		return nil, fmt.Errorf("%w: chunk at payload offset %d: a frame of %d bytes, the index says %d", ErrChunkHash, e.Offset, len(frame), e.FrameN)
	}
	raw := frame
	if e.Compressed() {
		var err error
		if raw, err = d.dec.DecodeAll(frame, d.buf[:0]); err != nil {
			return nil, fmt.Errorf("%w: chunk at payload offset %d (store offset %d): %w", ErrChunkHash, e.Offset, e.Frame, err)
		}
	}
	return raw, Verify(e, raw)
}

// Verify checks that raw is e's chunk.
func Verify(e Entry, raw []byte) error {
	if len(raw) != e.Size || image.Digest(sha256.Sum256(raw)) != e.SHA256 {
		return fmt.Errorf("%w: chunk at payload offset %d (%d bytes, store offset %d)", ErrChunkHash, e.Offset, e.Size, e.Frame)
	}
	return nil
}
