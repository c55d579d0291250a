package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/slots"
)

// Source is one update file: where to read it and what the service says it is.
type Source struct {
	URL  string `json:"url"`  // http://, https:// or file:// (file:///abs/path)
	Size int64  `json:"size"` // sizeInBytes
	// SHA256 is the file's ADU hash (the manifest's "sha256"), checked over the whole file
	// even across resumes. Nil only for signed images installed by hand.
	SHA256 []byte `json:"sha256,omitempty"`
	// Local, if set, is read instead of URL: Size bytes of a file or device the caller
	// opened, read once from the start (no resume, no SHA256).
	Local io.ReaderAt `json:"-"`
	// Copy, if set, is read instead of URL: a slot whose first Size bytes go into the
	// target as they are (FormatCopy; no SHA256), resumable, and read back against Copy.
	// The agent fills the spare bank's slots that an update does not write from the running
	// bank's, opened read-only (slots.Layout.OpenReader).
	Copy slots.Reader `json:"-"`
	// Adaptive, if set, assembles the aduimg image at URL from what the device holds and the
	// chunks of its chunk store it lacks (FormatAdaptive), and falls back to downloading URL
	// when that cannot go on (see the package doc).
	Adaptive *Adaptive `json:"-"`
}

// Info is what the installer learnt about an image; Installer.Check decides whether it may
// go into the slot. For aduimg and raw files it is complete before the first byte is
// written, for an MCUboot image (whose protected TLVs come last) before its last bytes are.
type Info struct {
	Format          string            `json:"format"`
	Version         string            `json:"version,omitempty"`
	SlotClass       string            `json:"slot_class,omitempty"`
	Compatibility   map[string]string `json:"compatibility,omitempty"`
	SecurityCounter uint64            `json:"security_counter,omitempty"` // aduimg header, MCUboot SEC_CNT TLV (0 without)
	RawSize         int64             `json:"raw_size"`                   // bytes into the slot
	KeyID           string            `json:"key_id,omitempty"`
	// ImageHash is an MCUboot image's hash (its SHA256 TLV, the hash MCUboot and mcumgr's
	// image list name it by), known at the image's end.
	ImageHash []byte `json:"image_hash,omitempty"`
	// CounterUnknown: SecurityCounter is not known yet. An MCUboot image's SEC_CNT TLV comes
	// after its body, so Check sees the header's facts before the first byte is written
	// (CounterUnknown set: judge all but the counter) and the whole again at the end.
	CounterUnknown bool `json:"-"`
}

// Record is the resume record of one install: where the download continues (with the file
// hash up to there) and where the slot write continues, taken together; what the image is;
// and, once Done, that the slot holds it, read back.
type Record struct {
	Format string `json:"format,omitempty"`
	// Download is the download's state at the cursor's file offset.
	Download download.State `json:"download"`
	Cursor   *slots.Cursor  `json:"cursor,omitempty"` // where the slot write continues
	// Header is the aduimg header as signed. A caller may keep it apart (it is written once
	// per image, the record at every resume point) and only its SHA-256 in the record.
	Header       []byte      `json:"-"`
	HeaderSHA256 []byte      `json:"header_sha256,omitempty"`
	Done         bool        `json:"done,omitempty"` // written and read back
	Info         *Info       `json:"info,omitempty"`
	Stats        slots.Stats `json:"stats"`
	Downloaded   int64       `json:"downloaded"` // bytes fetched, all attempts
	// Adaptive is what an adaptive install fetched and reused, and why it fell back.
	Adaptive *AdaptiveRecord `json:"adaptive,omitempty"`
}

// Meter follows the stages of an install, for progress bars and watchdogs.
type Meter interface {
	// Stage starts a stage: StageWrite (payload into the slot) or StageReadBack, of total bytes.
	Stage(name string, total int64)
	// Add counts n more bytes of the current stage.
	Add(n int64)
}

// AdaptiveMeter is a Meter that an adaptive install also tells, as it goes, of the bytes it
// fetched (chunk frames and the header) and of the payload bytes it took from what the
// device holds.
type AdaptiveMeter interface {
	Meter
	Fetched(n int64)
	Reused(n int64)
}

// Stages a Meter is told of.
const (
	StageWrite    = "write"
	StageReadBack = "verify"
)

// Installer streams files into slots: download, file hash, image verification and slot
// write in one pass, then a read-back of the slot.
type Installer struct {
	Keyring *image.Keyring // trusted image keys (aduimg and MCUboot)
	// Raw writes every file as it is, unsniffed and unsigned (aduflash write --raw).
	Raw bool
	// AllowRaw accepts files that are neither aduimg nor MCUboot images, checked by their
	// SHA-256 alone (which they need).
	AllowRaw bool
	HTTP     *http.Client // nil: DefaultHTTPClient
	Retry    download.RetryPolicy
	// StallTimeout abandons (and retries) a request that delivers no byte for this long
	// (0: download's default).
	StallTimeout time.Duration
	// MaxChunkSize refuses aduimg images with larger chunks (an install holds about two: one
	// on its way to the slot, and a compressed frame; up to three of 1 MiB on their way),
	// before a payload byte is read (0: no limit).
	MaxChunkSize int
	// MaxHeaderSize refuses aduimg images with larger headers before reading them (0: only
	// the format's own limit and the slot's size bound them).
	MaxHeaderSize int
	// Check, if set, decides with the image's facts whether it may go into the slot; its
	// error reaches Install's caller as it is.
	Check func(Info) error
	// Save persists a resume point; an error stops the install.
	Save func(Record) error
	// Meter, if set, follows the bytes written and read back.
	Meter Meter
	// WriterOptions are added to every slot writer (tests: power cuts, small sync intervals).
	WriterOptions []slots.Option
	// NoReadBack skips the read-back after the write (the image is still verified while it
	// streams).
	NoReadBack bool
	// DryRun does everything but writing the slot and saving (see the package doc).
	DryRun bool
}

// DefaultHTTPClient returns a client for update downloads: no overall timeout (download has
// its own stall timeout) and file:// URLs served from the local file system.
func DefaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.RegisterProtocol("file", http.NewFileTransport(http.Dir("/")))
	return &http.Client{Transport: t}
}

// Install writes src into the target (a slot prepared with slots.Layout.Prepare: not in the
// running bank, its capacity known), continuing from resume when it holds a usable resume
// point of the same file. It returns the final record (Done; in a dry run, Info and the
// verdict) or the record so far with the error.
func (in *Installer) Install(ctx context.Context, src Source, target *slots.Target, resume *Record) (Record, error) {
	if src.Adaptive != nil && !in.Raw && src.Local == nil && src.Copy == nil {
		return in.installAdaptive(ctx, src, target, resume)
	}
	return in.install(ctx, src, target, resume)
}

// install is Install of one format: the adaptive one, or the file's.
func (in *Installer) install(ctx context.Context, src Source, target *slots.Target, resume *Record) (Record, error) {
	if src.Size < 0 {
		return Record{}, fmt.Errorf("%w: negative size %d", ErrSource, src.Size)
	}
	if err := src.check(); err != nil {
		return Record{}, err
	}
	if in.DryRun || src.Local != nil {
		resume = nil
	}
	if resume != nil && resume.Done {
		return *resume, nil
	}
	if resume != nil && (resume.Cursor == nil || resume.Download.Offset == 0) {
		resume = nil
	}
	r := &run{in: in, ctx: ctx, src: src, target: target, resume: resume}
	if resume != nil {
		r.rec = *resume
		r.rec.Cursor = nil
	}
	err := r.install()
	if err != nil && resume != nil && errors.Is(err, errStale) {
		// The resume point does not fit (other file, other slot geometry): start over.
		r = &run{in: in, ctx: ctx, src: src, target: target, rec: Record{Downloaded: r.rec.Downloaded, Adaptive: r.rec.Adaptive}}
		err = r.install()
	}
	return r.rec, err
}

// check refuses a source that names its bytes in two ways, or a slot copy of more bytes than
// the slot holds.
func (src Source) check() error {
	switch {
	case src.Local != nil && src.SHA256 != nil:
		return fmt.Errorf("%w: a local file is read as it is, without a SHA-256 to check", ErrSource)
	case src.Copy != nil && (src.Local != nil || src.SHA256 != nil):
		return fmt.Errorf("%w: a slot copy is read back against its slot, without a file or a SHA-256", ErrSource)
	case src.Copy != nil && src.Size > src.Copy.Size():
		return fmt.Errorf("%w: a copy of %d bytes from a slot that holds %d", ErrSource, src.Size, src.Copy.Size())
	}
	return nil
}

// run is one attempt of Install.
type run struct {
	in     *Installer
	ctx    context.Context
	src    Source
	target *slots.Target
	resume *Record
	rec    Record
	input  input
	// at is the resume point of a cursor that the chunk being written (or finished)
	// completes: the download's state after that chunk's frame; chunked says it is set
	// (aduimg; otherwise the writer's goroutine reads the input, whose state is exact).
	at      download.State
	chunked bool
	// cursorAt is the payload's payload.at: where the download stands at a cursor.
	cursorAt func(c slots.Cursor) int64
	// closers close what the format opened besides the input (a slot read as a source).
	closers []func() error
}

// install is the pipeline: input, format, admission, slot write, read-back.
func (r *run) install() error {
	in, err := r.openInput()
	if err != nil {
		return err
	}
	r.input = in
	defer r.closeInput()
	defer func() {
		for _, c := range r.closers {
			c()
		}
	}()
	p, err := r.payload()
	if err != nil {
		return r.classify(err)
	}
	r.rec.Format, r.rec.Header = p.format, p.header
	if err := r.fits(p.size); err != nil {
		return err
	}
	if p.info != nil {
		if err := r.admit(*p.info); err != nil {
			return r.classify(err)
		}
	}
	if there, err := r.alreadyThere(p); err != nil || there {
		return err
	}
	if r.in.DryRun && p.format == FormatAdaptive {
		return r.done() // the plan says what it would fetch; nothing is
	}
	w, err := r.openSink(p)
	if err != nil {
		return err
	}
	defer w.Close()
	r.input.stream(p.stop)
	if err := r.write(w, p); err != nil {
		return err
	}
	if err := r.readBack(w, p); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSlot, r.slot(), err)
	}
	return r.done()
}

func (r *run) slot() string { return r.target.Slot().String() }

func (r *run) classify(err error) error { return classify(err, r.slot()) }

// payload is the format's view of the file: sniffed, or the resume record's.
func (r *run) payload() (*payload, error) {
	if r.resume != nil && r.resume.Format == FormatAdaptive {
		if r.src.Adaptive == nil {
			return nil, errStale
		}
		return adaptiveFormat{}.resume(r, r.input, r.resume)
	}
	if r.src.Adaptive != nil {
		return adaptiveFormat{}.open(r, r.input)
	}
	if r.resume != nil {
		f, ok := formatNamed(r.resume.Format)
		if !ok {
			return nil, errStale
		}
		return f.resume(r, r.input, r.resume)
	}
	f, src, err := r.sniff()
	if err != nil {
		return nil, err
	}
	return f.open(r, src)
}

// fits refuses a payload larger than the slot.
func (r *run) fits(size int64) error {
	if c := r.target.Capacity(); c > 0 && size > c {
		return fmt.Errorf("%w: %w: %d bytes, slot %s takes %d", ErrImage, slots.ErrTooLarge, size, r.slot(), c)
	}
	return nil
}

// admit records what the image is and asks whether it may go into the slot: its slot class,
// then Installer.Check. A refusal reaches the caller as it is.
func (r *run) admit(info Info) error {
	r.rec.Info = &info
	s := r.target.Slot()
	if info.SlotClass != "" && !s.AdHoc() && info.SlotClass != s.Class {
		return refusal{fmt.Errorf("%w: a %s image, slot %s holds %s", ErrSlotClass, info.SlotClass, s.Name, s.Class)}
	}
	if r.in.Check != nil {
		if err := r.in.Check(info); err != nil {
			return refusal{err}
		}
	}
	return nil
}

// alreadyThere tells whether the slot holds the payload already (a slot copy compares first,
// unless it resumes), and then records the install done with nothing written.
func (r *run) alreadyThere(p *payload) (bool, error) {
	if p.holds == nil || r.resume != nil {
		return false, nil
	}
	same, err := p.holds(r.target)
	if err != nil || !same {
		return false, err
	}
	r.rec.Stats = slots.Stats{BytesSkipped: p.size}
	return true, r.done()
}

// openSink opens the slot writer at the resume cursor, or the dry run's counting sink.
func (r *run) openSink(p *payload) (sink, error) {
	if r.in.DryRun {
		return &discard{size: p.size, slot: r.slot()}, nil
	}
	opts := []slots.Option{slots.WithChunkSize(p.unit)}
	if p.resumable && r.in.Save != nil {
		// Without anybody keeping the cursors, sync points would only cost time: the
		// writer then syncs once, at Finish.
		r.cursorAt = p.at
		opts = append(opts, slots.WithCursorFunc(r.checkpoint))
	}
	if r.in.NoReadBack || !p.written {
		// Nobody asks for the checksums of what was written (the read-back checks the
		// chunk hashes, or a SHA-256): the writer need not compute them.
		opts = append(opts, slots.WithoutReadBack())
	}
	opts = append(opts, r.in.WriterOptions...)
	var cursor *slots.Cursor
	if r.resume != nil {
		cursor = r.resume.Cursor
	}
	w, err := r.target.OpenWriter(p.size, cursor, opts...)
	if err != nil {
		if cursor != nil && errors.Is(err, slots.ErrCursor) {
			return nil, errStale
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrSlot, r.slot(), err)
	}
	return w, nil
}

// write streams the payload into the slot and finishes the write.
func (r *run) write(w sink, p *payload) error {
	r.stage(StageWrite, p.size)
	mw := &meterWriter{ctx: r.ctx, w: w, m: r.in.Meter}
	var err error
	if p.chunks != nil {
		err = r.writeChunks(mw, p.chunks, int(min(int64(p.unit), p.size)))
	} else {
		_, err = io.CopyBuffer(mw, p.r, make([]byte, 256<<10))
	}
	if err == nil {
		err = w.Finish()
	}
	r.rec.Stats = w.Stats()
	if err != nil {
		return r.classify(err)
	}
	return nil
}

// readBack checks what the slot holds now with the format's check.
func (r *run) readBack(w sink, p *payload) error {
	if r.in.DryRun || r.in.NoReadBack {
		return nil
	}
	r.stage(StageReadBack, p.size)
	if err := p.check(w, &meterReaderAt{ra: w, m: r.in.Meter}); err != nil {
		return fmt.Errorf("%w: reading %s back: %w", ErrVerify, r.slot(), err)
	}
	return nil
}

// chunkMemory bounds the chunks on their way to the slot: three of 1 MiB (one being loaded
// and checked, one waiting, one being written), two of 2 MiB; larger chunks go one at a
// time, loaded while the download is read ahead, as the agent's memory is sized for them.
const chunkMemory = 4 << 20

// chunk is a verified chunk on its way to the slot, with the download's state after its
// frame; or the error (io.EOF after the last chunk) that ended the image.
type chunk struct {
	buf []byte
	n   int
	at  download.State
	err error
}

// writeChunks writes the image's chunks to w in order, loaded and checked (read, decompressed,
// hashed) in a goroutine ahead of the slot writer. Each chunk comes with the download's state
// after its frame, which is the resume point of a cursor the chunk completes.
func (r *run) writeChunks(w io.Writer, rd chunkReader, size int) error {
	buffers := min(3, max(1, chunkMemory/max(size, 1)))
	free, full, stop := make(chan []byte, buffers), make(chan chunk, 1), make(chan struct{})
	for range buffers {
		free <- make([]byte, size)
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.loadChunks(rd, free, full, stop) })
	defer func() {
		close(stop)
		r.input.close() // a load that waits for the download returns
		wg.Wait()
	}()
	for c := range full {
		if c.err != nil {
			if c.err == io.EOF {
				return nil
			}
			return c.err
		}
		r.at, r.chunked = c.at, true
		if _, err := w.Write(c.buf[:c.n]); err != nil {
			return err
		}
		free <- c.buf
	}
	return nil
}

// loadChunks reads chunks from rd into the free buffers and sends them to full, until the
// image ends (io.EOF), fails, or stop is closed.
func (r *run) loadChunks(rd chunkReader, free <-chan []byte, full chan<- chunk, stop <-chan struct{}) {
	defer close(full)
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-stop:
			return
		}
		n, err := rd.ReadChunk(buf)
		c := chunk{buf: buf, n: n, at: r.input.State(), err: err}
		select {
		case full <- c:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// checkpoint saves a resume point at cursor c, with the download's state at c's file offset:
// the one that came with the chunk being written (aduimg), or the input's own (raw: the
// writer's goroutine reads the input, which stops at every unit). A state anywhere else
// would resume the download where the slot does not stand: it is refused.
func (r *run) checkpoint(c slots.Cursor) error {
	at := r.at
	if !r.chunked {
		at = r.input.State()
	}
	if want := r.cursorAt(c); at.Offset != want {
		return fmt.Errorf("install: the download stands at file offset %d, cursor %d/%d of %s needs %d", at.Offset, c.Offset, c.Size, c.Slot, want)
	}
	r.rec.Cursor, r.rec.Download = &c, at
	r.countAssembly()
	return r.in.Save(r.rec)
}

// done records the finished install and saves it.
func (r *run) done() error {
	r.rec.Done, r.rec.Cursor = true, nil
	r.rec.Download = r.input.State()
	r.countAssembly()
	if r.in.DryRun || r.in.Save == nil {
		return nil
	}
	return r.in.Save(r.rec)
}

// countAssembly puts an adaptive install's counts into the record.
func (r *run) countAssembly() {
	if a, ok := r.input.(*assembly); ok {
		a.count(&r.rec)
	}
}

func (r *run) stage(name string, total int64) {
	if r.in.Meter != nil {
		r.in.Meter.Stage(name, total)
	}
}

// meterWriter tells the meter of the bytes written and stops at the context's end.
type meterWriter struct {
	ctx context.Context
	w   io.Writer
	m   Meter
}

func (mw *meterWriter) Write(p []byte) (int, error) {
	if err := mw.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := mw.w.Write(p)
	if mw.m != nil {
		mw.m.Add(int64(n))
	}
	return n, err
}

// meterReaderAt tells the meter of the bytes read back.
type meterReaderAt struct {
	ra io.ReaderAt
	m  Meter
}

func (mr *meterReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := mr.ra.ReadAt(p, off)
	if mr.m != nil {
		mr.m.Add(int64(n))
	}
	return n, err
}
