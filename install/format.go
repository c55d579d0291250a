package install

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/slots"
)

// Image formats an update file can have.
const (
	FormatAduimg  = "aduimg"
	FormatMCUboot = "mcuboot"
	FormatRaw     = "raw"
	// FormatCopy is a slot copied as it is from another slot (Source.Copy).
	FormatCopy = "copy"
)

// SniffSize is how many first bytes of a file Sniff needs.
const SniffSize = 16

// Sniff names the format of a file from its first bytes (SniffSize are enough): FormatAduimg,
// FormatMCUboot, or "" for a file that is neither.
func Sniff(prefix []byte) string {
	switch {
	case image.IsImage(prefix):
		return FormatAduimg
	case mcuboot.IsImage(prefix):
		return FormatMCUboot
	}
	return ""
}

// A format turns a file into the bytes of its slot, verified as they stream.
type format interface {
	// open reads what the format needs before the payload from src, the file from its start.
	open(r *run, src io.Reader) (*payload, error)
	// resume continues from rec's cursor, src being the file from rec's download offset.
	resume(r *run, src io.Reader, rec *Record) (*payload, error)
}

// payload is the format's view of a file: the slot's bytes and how to check them once written.
type payload struct {
	format string
	r      io.Reader // the slot's bytes, verified as they pass
	// chunks, for an aduimg image, is r itself (adaptive: the assembly): its chunks of unit
	// bytes are loaded and checked in a goroutine ahead of the slot writer (write).
	chunks chunkReader
	size   int64 // how many go into the slot
	// info is what the image says, when it is known before the first byte (nil for MCUboot,
	// whose reader asks at its end).
	info   *Info
	header []byte // an aduimg header, for the resume record
	// unit is the granularity of the slot write's cursors (slots.WithChunkSize; 0: none);
	// resumable says whether they are saved.
	unit      int
	resumable bool
	// stop is the first file offset after off where a cursor may fall (nil: none), at returns
	// the file offset of cursor c: where the download must stand when c is saved (set for
	// every resumable payload).
	stop func(off int64) int64
	at   func(c slots.Cursor) int64
	// check reads the slot back (over ra, which counts) after the write; written says it
	// does so with the slot writer's checksums of what it wrote (sink.VerifyWritten), which
	// the writer keeps only then.
	check   func(w sink, ra io.ReaderAt) error
	written bool
	// holds, if set, tells whether the slot holds the payload already, before anything is
	// written (a slot copy compares the slot with its source).
	holds func(t *slots.Target) (bool, error)
}

// chunkReader hands out a payload by chunks, each checked before it is (image.Reader).
type chunkReader interface {
	ReadChunk(p []byte) (int, error)
}

func formatNamed(name string) (format, bool) {
	switch name {
	case FormatAduimg:
		return aduimg{}, true
	case FormatRaw:
		return raw{}, true
	case FormatCopy:
		return slotCopy{}, true
	}
	return nil, false // MCUboot images do not resume
}

// sniff reads the first bytes of the file and picks its format; src replays them. A slot
// copy is a copy, whatever its bytes.
func (r *run) sniff() (format, io.Reader, error) {
	if r.src.Copy != nil {
		return slotCopy{}, r.input, nil
	}
	prefix, src, err := r.input.head(SniffSize)
	if err != nil {
		return nil, nil, err
	}
	kind := Sniff(prefix)
	switch {
	case r.in.Raw:
		return raw{}, src, nil
	case kind == FormatAduimg:
		return aduimg{}, src, nil
	case kind == FormatMCUboot:
		return mcubootFormat{}, src, nil
	case !r.in.AllowRaw:
		return nil, nil, fmt.Errorf("%w: the file is neither an aduimg nor an MCUboot image", ErrRawNotAllowed)
	case r.src.SHA256 == nil:
		return nil, nil, fmt.Errorf("%w: a raw image needs its SHA-256", ErrRawNotAllowed)
	}
	return raw{}, src, nil
}

// aduimg: a signed header, then chunks checked against it (image.Reader).
type aduimg struct{}

func (aduimg) open(r *run, src io.Reader) (*payload, error) {
	h, err := r.readHeader(src)
	if err != nil {
		return nil, err
	}
	if h.ImageSize != r.src.Size {
		return nil, fmt.Errorf("%w: the image is %d bytes, the manifest says %d", ErrImage, h.ImageSize, r.src.Size)
	}
	return aduimgPayload(h, src, 0)
}

func (aduimg) resume(r *run, src io.Reader, rec *Record) (*payload, error) {
	h, err := r.resumeHeader(rec)
	if err != nil {
		return nil, err
	}
	if frameStart(h, rec.Cursor.Chunk) != rec.Download.Offset {
		return nil, errStale
	}
	return aduimgPayload(h, src, rec.Cursor.Chunk)
}

// resumeHeader is the aduimg header a record kept, verified again, if the record's slot
// cursor stands at one of its chunks (errStale if not, or if no header was kept).
func (r *run) resumeHeader(rec *Record) (*image.Header, error) {
	if len(rec.Header) == 0 {
		return nil, errStale
	}
	h, err := r.readHeader(bytes.NewReader(rec.Header))
	if err != nil {
		return nil, err
	}
	c := rec.Cursor
	if c.ChunkSize != h.ChunkSize || c.Chunk < 0 || c.Chunk > len(h.Chunks) || c.Size != h.RawSize {
		return nil, errStale
	}
	return h, nil
}

// readHeader reads and verifies an aduimg header: a trusted key, a payload the slot holds,
// chunks the device can buffer.
func (r *run) readHeader(src io.Reader) (*image.Header, error) {
	h, err := image.ReadHeader(src, image.VerifyOptions{Keyring: r.in.Keyring, MaxRawSize: r.target.Capacity(), MaxChunkSize: r.in.MaxChunkSize, MaxHeaderSize: r.in.MaxHeaderSize})
	if errors.Is(err, image.ErrChunkTooLarge) {
		err = fmt.Errorf("%w (agent.max_chunk_size; sign the image with a smaller aduimport sign --chunk-size)", err)
	}
	return h, err
}

func aduimgPayload(h *image.Header, src io.Reader, first int) (*payload, error) {
	rd, err := image.NewChunkReader(h, src, first)
	if err != nil {
		return nil, err
	}
	info := &Info{Format: FormatAduimg, Version: h.Version, SlotClass: h.SlotClass, Compatibility: h.Compatibility,
		SecurityCounter: h.SecurityCounter, RawSize: h.RawSize, KeyID: h.KeyID.String()}
	return &payload{format: FormatAduimg, r: rd, chunks: rd, size: h.RawSize, info: info, header: h.Encoded(),
		unit: h.ChunkSize, resumable: true,
		stop: func(off int64) int64 { return frameStart(h, nextFrame(h, off)) },
		at:   func(c slots.Cursor) int64 { return frameStart(h, c.Chunk) },
		check: func(_ sink, ra io.ReaderAt) error {
			err := h.VerifyAt(ra)
			if errors.Is(err, image.ErrChunkHash) {
				err = fmt.Errorf("%w: %w", slots.ErrMismatch, err)
			}
			return err
		}}, nil
}

// frameStart is the file offset of chunk i's frame (the image's end after the last chunk).
func frameStart(h *image.Header, i int) int64 {
	if i == len(h.Chunks) {
		return h.ImageSize
	}
	return h.Chunks[i].Offset
}

// nextFrame is the index of the first chunk whose frame starts after file offset off
// (len(h.Chunks) when none does).
func nextFrame(h *image.Header, off int64) int {
	return sort.Search(len(h.Chunks), func(i int) bool { return h.Chunks[i].Offset > off })
}

// rawUnit is the resume granularity of raw files: cursors fall on multiples of it.
const rawUnit = 1 << 20

// raw: the file as it is, checked by its SHA-256 (in the download) or not at all (--raw).
type raw struct{}

func (raw) open(r *run, src io.Reader) (*payload, error) { return rawPayload(r, src), nil }

func (raw) resume(r *run, src io.Reader, rec *Record) (*payload, error) {
	c := rec.Cursor
	if c.ChunkSize != rawUnit || c.Size != r.src.Size || c.Offset != rec.Download.Offset || r.src.SHA256 == nil {
		return nil, errStale
	}
	return rawPayload(r, src), nil
}

func rawPayload(r *run, src io.Reader) *payload {
	size, sum := r.src.Size, r.src.SHA256
	p := &payload{format: FormatRaw, r: src, size: size, info: &Info{Format: FormatRaw, RawSize: size}, written: sum == nil}
	if r.src.Local == nil {
		// Resumable: the cursors' units are the download's stops.
		p.unit, p.resumable = rawUnit, true
		p.stop = func(off int64) int64 { return (off/rawUnit + 1) * rawUnit }
		p.at = func(c slots.Cursor) int64 { return c.Offset }
	}
	p.check = func(w sink, ra io.ReaderAt) error {
		if sum == nil {
			// Units found identical were compared byte for byte while writing; the others
			// are read back against the CRC-32C of what was written.
			return w.VerifyWritten()
		}
		// The slot must hold exactly the file the service hashed.
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(ra, 0, size)); err != nil {
			return err
		}
		if got := h.Sum(nil); !bytes.Equal(got, sum) {
			return fmt.Errorf("%w: the slot's SHA-256 is %x, the file's %x", slots.ErrMismatch, got, sum)
		}
		return nil
	}
	return p
}

// mcubootFormat: header and body stream into the slot; the hash, the signature and the
// caller's check of the protected TLVs happen at the end, before the TLV areas pass.
type mcubootFormat struct{}

func (mcubootFormat) open(r *run, src io.Reader) (*payload, error) {
	if r.src.Size > mcuboot.MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", mcuboot.ErrTooLarge, r.src.Size)
	}
	rd, err := mcuboot.NewReader(src, r.src.Size, r.in.Keyring, func(img *mcuboot.Image) error {
		sc, _ := img.SecurityCounter() // the signed SEC_CNT TLV; 0 without one
		return r.admit(Info{Format: FormatMCUboot, Version: img.Header.Version.String(), SecurityCounter: uint64(sc), RawSize: r.src.Size,
			ImageHash: img.Hash()})
	})
	if err != nil {
		return nil, err
	}
	// What the header says is judged before its first byte goes into the slot (an older
	// version is refused there); the end of the image tells the rest.
	if err := r.admit(Info{Format: FormatMCUboot, Version: rd.Header().Version.String(), RawSize: r.src.Size, CounterUnknown: true}); err != nil {
		return nil, err
	}
	return &payload{format: FormatMCUboot, r: rd, size: r.src.Size,
		check: func(_ sink, ra io.ReaderAt) error { return rd.VerifyAt(ra) }}, nil
}

func (mcubootFormat) resume(*run, io.Reader, *Record) (*payload, error) { return nil, errStale }
