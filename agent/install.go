package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/slots"
)

// Image formats an update file can have.
const (
	FormatAduimg  = "aduimg"
	FormatMCUboot = "mcuboot"
	FormatRaw     = "raw"
)

// rawUnit is the resume granularity of raw images: cursors and file-hash snapshots fall on
// multiples of it.
const rawUnit = 1 << 20

// Source is one update file: where to fetch it and what the service says it is.
type Source struct {
	URL  string `json:"url"`  // http://, https:// or file:// (file:///abs/path)
	Size int64  `json:"size"` // sizeInBytes
	// SHA256 is the file's ADU hash (the manifest's "sha256"), checked over the whole
	// file even across resumes. Nil only for manual installs of signed images.
	SHA256 []byte `json:"sha256,omitempty"`
}

// Progress is the resumable state of one file's install, persisted in the journal.
type Progress struct {
	Format string `json:"format,omitempty"`
	// FileOffset is where the download continues; FileHash the marshaled SHA-256 state of
	// the first FileOffset bytes of the file.
	FileOffset   int64  `json:"file_offset"`
	FileHash     []byte `json:"file_hash,omitempty"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	// Header is the aduimg header as signed. The agent's journal keeps it in a file of its
	// own, written once per image, and only its SHA-256 in the progress record.
	Header       []byte        `json:"-"`
	HeaderSHA256 []byte        `json:"header_sha256,omitempty"`
	Cursor       *slots.Cursor `json:"cursor,omitempty"` // where the slot write continues
	Done         bool          `json:"done,omitempty"`   // written and read back
	Info         *ImageInfo    `json:"info,omitempty"`
	Stats        slots.Stats   `json:"stats"`
	Downloaded   int64         `json:"downloaded"` // bytes fetched over the network, all attempts
}

// ImageInfo is what the installer learnt about an image before writing its first byte; the
// check function decides whether it may go into the slot.
type ImageInfo struct {
	Format          string            `json:"format"`
	Version         string            `json:"version,omitempty"`
	SlotClass       string            `json:"slot_class,omitempty"`
	Compatibility   map[string]string `json:"compatibility,omitempty"`
	SecurityCounter uint64            `json:"security_counter,omitempty"` // aduimg header, MCUboot SEC_CNT TLV (0 without)
	RawSize         int64             `json:"raw_size"`
	KeyID           string            `json:"key_id,omitempty"`
}

// Installer streams update files into slots: download, file hash, image verification and
// slot write in one pass, then a read-back of the slot.
type Installer struct {
	Layout  *slots.Layout
	Keyring *image.Keyring // trusted image keys (aduimg and MCUboot)
	// AllowRaw accepts files that are neither aduimg nor MCUboot images, checked by their
	// ADU hash alone.
	AllowRaw bool
	HTTP     *http.Client // nil: a client that also reads file:// URLs
	Retry    download.RetryPolicy
	// StallTimeout abandons (and retries) a request that delivers no byte for this long
	// (0: download's default).
	StallTimeout time.Duration
	// MaxChunkSize refuses aduimg images with larger chunks (the reader holds about two), before
	// a payload byte is read (0: no limit).
	MaxChunkSize int
	// Check, if set, is called with the verified image's facts before the slot is opened;
	// an error refuses the image.
	Check func(ImageInfo) error
	// Save persists a resume point (the journal); an error stops the install.
	Save func(Progress) error
	// OnBytes, if set, is told how many payload bytes went into the slot.
	OnBytes func(n int64)
	// WriterOptions are added to every slot writer (tests: power cuts, small sync intervals).
	WriterOptions []slots.Option
}

// DefaultHTTPClient returns a client for update downloads: no overall timeout (download has
// its own stall timeout) and file:// URLs served from the local file system.
func DefaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.RegisterProtocol("file", http.NewFileTransport(http.Dir("/")))
	return &http.Client{Transport: t}
}

// Install writes src into slot, continuing from resume when it holds a usable resume point
// of the same file. It returns the final progress (Done) or the progress so far with the
// error.
func (in *Installer) Install(ctx context.Context, src Source, slot *slots.Slot, resume *Progress) (Progress, error) {
	if src.Size < 0 {
		return Progress{}, fmt.Errorf("%w: negative size %d", ErrBadManifest, src.Size)
	}
	if resume != nil && resume.Done {
		return *resume, nil
	}
	if err := in.Layout.CheckWritable(slot); err != nil {
		return Progress{}, fmt.Errorf("%w: %s: %w", ErrSlot, slot.Name, err)
	}
	capacity, err := in.Layout.Capacity(slot)
	if err != nil {
		return Progress{}, fmt.Errorf("%w: %s: %w", ErrSlot, slot.Name, err)
	}
	r := &run{in: in, ctx: ctx, src: src, slot: slot, capacity: capacity}
	if resume != nil && resume.Cursor != nil && resume.FileOffset > 0 && len(resume.FileHash) > 0 {
		r.resume = resume
	}
	err = r.install()
	if err != nil && r.resume != nil && errors.Is(err, errStaleResume) {
		// The resume point does not fit (other file, other slot geometry): start over.
		r = &run{in: in, ctx: ctx, src: src, slot: slot, capacity: capacity}
		err = r.install()
	}
	return r.prog, err
}

var errStaleResume = errors.New("resume point does not match")

// run is one Install attempt.
type run struct {
	in       *Installer
	ctx      context.Context
	src      Source
	slot     *slots.Slot
	capacity int64
	resume   *Progress
	prog     Progress

	hr *hashReader
	dl *fetchState
}

// fetchState is shared with the download goroutine.
type fetchState struct {
	mu      sync.Mutex
	etag    string
	lastMod string
	fetched int64
}

func (in *Installer) client() *http.Client {
	if in.HTTP != nil {
		return in.HTTP
	}
	return DefaultHTTPClient()
}

// start fetches from offset on (with the hash state of the bytes before it) into a pipe the
// caller reads through r.hr. stop ends the download and waits for it.
func (r *run) start(offset int64, hashState []byte, etag, lastMod string) (stop func(), err error) {
	h := sha256.New()
	if hashState != nil {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(hashState); err != nil {
			return nil, fmt.Errorf("%w: file hash state: %v", errStaleResume, err)
		}
	}
	r.hr = &hashReader{h: h, off: offset, want: r.src.SHA256, size: r.src.Size, snaps: map[int64][]byte{}, next: -1}
	r.dl = &fetchState{etag: etag, lastMod: lastMod}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(r.ctx)
	req := download.Request{URL: r.src.URL, Size: r.src.Size, Client: r.in.client(), Retry: r.in.Retry, StallTimeout: r.in.StallTimeout, ProgressEvery: 256 << 10,
		OnProgress: func(st download.State) error {
			r.dl.mu.Lock()
			r.dl.etag, r.dl.lastMod = st.ETag, st.LastModified
			r.dl.mu.Unlock()
			return nil
		}}
	if offset > 0 {
		st := download.NewState(r.src.Size, nil)
		st.Offset, st.ETag, st.LastModified = offset, etag, lastMod
		req.Resume = &st
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := download.Fetch(ctx, req, pw)
		r.dl.mu.Lock()
		r.dl.fetched = res.State.Offset - res.ResumedFrom
		r.dl.etag, r.dl.lastMod = res.State.ETag, res.State.LastModified
		r.dl.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrDownload, err)
		}
		pw.CloseWithError(err)
	}()
	r.hr.r = pr
	return func() {
		cancel()
		pr.CloseWithError(errors.New("install stopped"))
		<-done
		r.dl.mu.Lock()
		r.prog.Downloaded += r.dl.fetched
		r.dl.mu.Unlock()
	}, nil
}

func (r *run) install() error {
	if r.resume != nil {
		r.prog = *r.resume
		r.prog.Cursor = nil
		if r.resume.Format != FormatAduimg && r.resume.Format != FormatRaw {
			return errStaleResume
		}
		stop, err := r.start(r.resume.FileOffset, r.resume.FileHash, r.resume.ETag, r.resume.LastModified)
		if err != nil {
			return err
		}
		defer stop()
		if r.resume.Format == FormatAduimg {
			return r.aduimg()
		}
		return r.raw()
	}
	r.prog = Progress{}
	stop, err := r.start(0, nil, "", "")
	if err != nil {
		return err
	}
	defer stop()
	br := bufio.NewReaderSize(r.hr, 64)
	prefix, _ := br.Peek(16)
	if len(prefix) < 16 && r.hr.err != nil {
		return r.hr.err // the download failed (404, reset, too long ...)
	}
	switch {
	case image.IsImage(prefix):
		r.prog.Format = FormatAduimg
		return r.aduimgFrom(br)
	case mcuboot.IsImage(prefix):
		r.prog.Format = FormatMCUboot
		return r.mcuboot(br)
	case !r.in.AllowRaw:
		return fmt.Errorf("%w: the file is neither an aduimg nor an MCUboot image", ErrRawNotAllowed)
	case r.src.SHA256 == nil:
		return fmt.Errorf("%w: a raw image needs its SHA-256", ErrRawNotAllowed)
	default:
		r.prog.Format = FormatRaw
		return r.rawWrite(br, nil)
	}
}

// aduimg resumes an aduimg write from the journal.
func (r *run) aduimg() error {
	if len(r.resume.Header) == 0 {
		return errStaleResume
	}
	h, err := r.readHeader(bytes.NewReader(r.resume.Header))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	c := r.resume.Cursor
	if c.ChunkSize != h.ChunkSize || c.Chunk < 0 || c.Chunk > len(h.Chunks) || c.Size != h.RawSize || frameStart(h, c.Chunk) != r.resume.FileOffset {
		return errStaleResume
	}
	return r.writeImage(h, r.hr, c)
}

// readHeader reads and verifies an aduimg header: a trusted key, a payload the slot holds,
// chunks the device can buffer.
func (r *run) readHeader(src io.Reader) (*image.Header, error) {
	h, err := image.ReadHeader(src, image.VerifyOptions{Keyring: r.in.Keyring, MaxRawSize: r.capacity, MaxChunkSize: r.in.MaxChunkSize})
	if errors.Is(err, image.ErrChunkTooLarge) {
		err = fmt.Errorf("%w (agent.max_chunk_size; sign the image with a smaller aduimport sign --chunk-size)", err)
	}
	return h, err
}

func frameStart(h *image.Header, i int) int64 {
	if i == len(h.Chunks) {
		return h.ImageSize
	}
	return h.Chunks[i].Offset
}

func (r *run) aduimgFrom(br *bufio.Reader) error {
	h, err := r.readHeader(br)
	if err != nil {
		if e := r.hr.err; e != nil {
			return e // the download failed under the header
		}
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	if h.ImageSize != r.src.Size {
		return fmt.Errorf("%w: the image is %d bytes, the manifest says %d", ErrImage, h.ImageSize, r.src.Size)
	}
	// The bufio reader holds at most the bytes after the header that it peeked; hand them on.
	rest := io.MultiReader(io.LimitReader(br, int64(br.Buffered())), r.hr)
	return r.writeImage(h, rest, nil)
}

func (r *run) writeImage(h *image.Header, src io.Reader, cursor *slots.Cursor) error {
	info := ImageInfo{Format: FormatAduimg, Version: h.Version, SlotClass: h.SlotClass, Compatibility: h.Compatibility,
		SecurityCounter: h.SecurityCounter, RawSize: h.RawSize, KeyID: h.KeyID.String()}
	if err := r.check(info); err != nil {
		return err
	}
	r.prog.Info, r.prog.Header = &info, h.Encoded()
	// Snapshots of the file hash at every frame start the reader passes, for the cursors.
	r.hr.bounds = func(off int64) int64 {
		for i := range h.Chunks {
			if h.Chunks[i].Offset > off {
				return h.Chunks[i].Offset
			}
		}
		if h.ImageSize > off {
			return h.ImageSize
		}
		return -1
	}
	r.hr.next = r.hr.bounds(r.hr.off)
	first := 0
	if cursor != nil {
		first = cursor.Chunk
	}
	rd, err := image.NewChunkReader(h, src, first)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	opts := []slots.Option{slots.WithChunkSize(h.ChunkSize), slots.WithCursorFunc(func(c slots.Cursor) error {
		return r.save(c, frameStart(h, c.Chunk))
	})}
	return r.write(h.RawSize, rd, cursor, opts, func(w slots.Writer) error { return readBackChunks(w, h) })
}

// raw resumes a raw write.
func (r *run) raw() error {
	c := r.resume.Cursor
	if c.ChunkSize != rawUnit || c.Size != r.src.Size || c.Offset != r.resume.FileOffset || r.src.SHA256 == nil {
		return errStaleResume
	}
	return r.rawWrite(r.hr, c)
}

func (r *run) rawWrite(src io.Reader, cursor *slots.Cursor) error {
	info := ImageInfo{Format: FormatRaw, RawSize: r.src.Size}
	if err := r.check(info); err != nil {
		return err
	}
	r.prog.Info = &info
	r.hr.bounds = func(off int64) int64 {
		n := (off/rawUnit + 1) * rawUnit
		if n > r.src.Size {
			n = r.src.Size
		}
		if n <= off {
			return -1
		}
		return n
	}
	r.hr.next = r.hr.bounds(r.hr.off)
	opts := []slots.Option{slots.WithChunkSize(rawUnit), slots.WithCursorFunc(func(c slots.Cursor) error {
		return r.save(c, c.Offset)
	})}
	return r.write(r.src.Size, src, cursor, opts, func(w slots.Writer) error {
		// The slot must hold exactly the file the service hashed.
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(w, 0, r.src.Size)); err != nil {
			return err
		}
		if !bytes.Equal(h.Sum(nil), r.src.SHA256) {
			return fmt.Errorf("%w: the slot's SHA-256 is %x, the file's %x", slots.ErrMismatch, h.Sum(nil), r.src.SHA256)
		}
		return nil
	})
}

func (r *run) mcuboot(br *bufio.Reader) error {
	if r.src.Size > mcuboot.MaxSize {
		return fmt.Errorf("%w: %w: %d bytes", ErrImage, mcuboot.ErrTooLarge, r.src.Size)
	}
	data, err := io.ReadAll(br)
	if err != nil {
		return err
	}
	img, err := verifyMCUboot(data, r.in.Keyring)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	sc, _ := img.SecurityCounter() // the signed SEC_CNT TLV; 0 without one
	info := ImageInfo{Format: FormatMCUboot, Version: img.Header.Version.String(), SecurityCounter: uint64(sc), RawSize: int64(len(data))}
	if err := r.check(info); err != nil {
		return err
	}
	r.prog.Info = &info
	return r.write(int64(len(data)), bytes.NewReader(data), nil, nil,
		func(w slots.Writer) error { return w.Verify(bytes.NewReader(data)) })
}

func (r *run) check(info ImageInfo) error {
	if r.capacity > 0 && info.RawSize > r.capacity {
		return fmt.Errorf("%w: %w: %d bytes, slot %s takes %d", ErrImage, slots.ErrTooLarge, info.RawSize, r.slot.Name, r.capacity)
	}
	if info.SlotClass != "" && !r.slot.AdHoc() && info.SlotClass != r.slot.Class {
		return fmt.Errorf("%w: a %s image, slot %s holds %s", ErrSlotClass, info.SlotClass, r.slot.Name, r.slot.Class)
	}
	if r.in.Check != nil {
		return r.in.Check(info)
	}
	return nil
}

// save persists a resume point: cursor c with the file hash at file offset off.
func (r *run) save(c slots.Cursor, off int64) error {
	snap, ok := r.hr.snaps[off]
	if !ok {
		return nil // not a point the hash passed exactly; the next one will be
	}
	for k := range r.hr.snaps {
		if k <= off {
			delete(r.hr.snaps, k)
		}
	}
	if r.in.Save == nil {
		return nil
	}
	r.dl.mu.Lock()
	r.prog.ETag, r.prog.LastModified = r.dl.etag, r.dl.lastMod
	r.dl.mu.Unlock()
	c2 := c
	r.prog.Cursor, r.prog.FileOffset, r.prog.FileHash = &c2, off, snap
	return r.in.Save(r.prog)
}

func (r *run) write(size int64, src io.Reader, cursor *slots.Cursor, opts []slots.Option, verify func(slots.Writer) error) error {
	opts = append(opts, r.in.WriterOptions...)
	w, err := r.in.Layout.OpenWriter(r.slot, size, cursor, opts...)
	if err != nil {
		if cursor != nil && errors.Is(err, slots.ErrCursor) {
			return errStaleResume
		}
		return fmt.Errorf("%w: %s: %w", ErrSlot, r.slot.Name, err)
	}
	defer w.Close()
	var dst io.Writer = w
	if r.in.OnBytes != nil {
		dst = &countWriter{w: w, fn: r.in.OnBytes}
	}
	buf := make([]byte, 256<<10)
	_, err = io.CopyBuffer(dst, src, buf)
	if err == nil {
		err = w.Finish()
	}
	r.prog.Stats = w.Stats()
	if err != nil {
		if e := r.hr.err; e != nil && !errors.Is(err, ErrFileHash) {
			err = e // the download's own error says more than the reader's
		}
		return r.classify(err)
	}
	if err := verify(w); err != nil {
		return fmt.Errorf("%w: reading %s back: %w", ErrVerify, r.slot.Name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSlot, r.slot.Name, err)
	}
	r.prog.Done, r.prog.Cursor = true, nil
	r.prog.FileOffset, r.prog.FileHash = r.src.Size, nil
	if r.in.Save != nil {
		if err := r.in.Save(r.prog); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) classify(err error) error {
	switch {
	case errors.Is(err, ErrDownload), errors.Is(err, ErrFileHash), errors.Is(err, ErrImage),
		errors.Is(err, ErrSlot), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case image.Rejected(err):
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	return fmt.Errorf("%w: writing %s: %w", ErrSlot, r.slot.Name, err)
}

type countWriter struct {
	w  io.Writer
	fn func(int64)
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.fn(int64(n))
	return n, err
}

// hashReader hashes the file as the image reader consumes it, never reading across the next
// boundary so that the hash state can be snapshot exactly there; at the end of the file it
// checks the ADU hash and returns ErrFileHash instead of io.EOF on a mismatch, so the image
// reader withholds the last chunk.
type hashReader struct {
	r      io.Reader
	h      hash.Hash
	off    int64
	size   int64
	want   []byte
	bounds func(off int64) int64 // next boundary after off, -1 none
	next   int64
	snaps  map[int64][]byte
	err    error // the first non-EOF error of r
}

func (hr *hashReader) Read(p []byte) (int, error) {
	if hr.next >= 0 && hr.off+int64(len(p)) > hr.next {
		p = p[:hr.next-hr.off]
	}
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.off += int64(n)
	if hr.next >= 0 && hr.off == hr.next {
		b, _ := hr.h.(encoding.BinaryMarshaler).MarshalBinary()
		hr.snaps[hr.off] = b
		hr.next = hr.bounds(hr.off)
	}
	if err == io.EOF {
		if hr.want != nil && !bytes.Equal(hr.h.Sum(nil), hr.want) {
			hr.err = fmt.Errorf("%w: got %x, the manifest says %x", ErrFileHash, hr.h.Sum(nil), hr.want)
			return n, hr.err
		}
	} else if err != nil && hr.err == nil {
		hr.err = err
	}
	return n, err
}

// verifyMCUboot checks data against every trusted key until one verifies.
func verifyMCUboot(data []byte, kr *image.Keyring) (*mcuboot.Image, error) {
	var first error
	if kr != nil {
		for _, id := range kr.KeyIDs() {
			k, err := kr.Lookup(id)
			if err != nil {
				continue
			}
			img, err := mcuboot.Verify(data, crypto.PublicKey(k))
			if err == nil {
				return img, nil
			}
			if first == nil || !errors.Is(err, mcuboot.ErrKeyMismatch) {
				first = err
			}
		}
	}
	if first == nil {
		first = image.ErrUnknownKey
	}
	return nil, first
}

// readBackChunks checks every chunk hash of h over the slot; a chunk that does not match is a
// read-back mismatch.
func readBackChunks(ra io.ReaderAt, h *image.Header) error {
	err := h.VerifyAt(ra)
	if errors.Is(err, image.ErrChunkHash) {
		return fmt.Errorf("%w: %w", slots.ErrMismatch, err)
	}
	return err
}
