package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/slots"
)

// Each format goes into the spare slot in one pass and is read back: an aduimg image (its
// chunks), an MCUboot image (as it is), a raw file with its SHA-256 (as it is).
func TestInstallFormats(t *testing.T) {
	d, srv := newDevice(t), newServer(t)
	raw := testData(1, 600<<10)
	mcu := mcubootOf(t, testData(2, 100<<10), 5)
	for _, tc := range []struct {
		format, slot string
		file, want   []byte
		info         Info
	}{
		{FormatAduimg, "rootfs-b", aduimgOf(t, raw, "2.0", nil), raw, Info{Format: FormatAduimg, Version: "2.0", SlotClass: "rootfs", RawSize: int64(len(raw))}},
		{FormatMCUboot, "firmware-b", mcu, mcu, Info{Format: FormatMCUboot, Version: "2.0.0+0", SecurityCounter: 5, RawSize: int64(len(mcu))}},
		{FormatRaw, "rootfs-b", raw, raw, Info{Format: FormatRaw, RawSize: int64(len(raw))}},
	} {
		in := d.installer(t)
		in.AllowRaw = true
		var checked []Info
		in.Check = func(i Info) error { checked = append(checked, i); return nil }
		rec, err := in.Install(context.Background(), srv.put(tc.format, tc.file), d.target(t, tc.slot), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		if !rec.Done || rec.Format != tc.format || rec.Info == nil || rec.Info.Version != tc.info.Version ||
			rec.Info.SecurityCounter != tc.info.SecurityCounter || rec.Info.RawSize != tc.info.RawSize || rec.Downloaded != int64(len(tc.file)) {
			t.Errorf("%s: record %+v, info %+v", tc.format, rec, rec.Info)
		}
		// Check judges what the header says before the first byte; for MCUboot, whose
		// SEC_CNT comes after the body, once more with the counter at the end.
		wantChecks := 1
		if tc.format == FormatMCUboot {
			wantChecks = 2
		}
		if len(checked) != wantChecks || checked[0].Format != tc.format || checked[len(checked)-1].CounterUnknown ||
			(wantChecks == 2 && (!checked[0].CounterUnknown || checked[0].Version != tc.info.Version)) {
			t.Errorf("%s: Check saw %+v", tc.format, checked)
		}
		if !d.holds(tc.slot, tc.want) {
			t.Errorf("%s: the slot does not hold the payload", tc.format)
		}
	}
}

// An install cut short resumes from its record: the download continues with a Range from
// the record's offset (an aduimg chunk or a raw unit boundary, where the file hash state was
// taken), and the slot ends up whole.
func TestInstallResume(t *testing.T) {
	raw := testData(3, 3<<20+333)
	for _, tc := range []struct {
		format string
		file   []byte
	}{
		{FormatAduimg, aduimgOf(t, raw, "2.0", func(o *image.SignOptions) { o.ChunkSize = 64 << 10 })},
		{FormatRaw, raw},
	} {
		d, srv := newDevice(t), newServer(t)
		src := srv.put(tc.format, tc.file)
		in := d.installer(t)
		in.AllowRaw = true
		last := d.installCut(t, in, src)
		if last.Cursor == nil || last.Download.Offset == 0 || last.Download.Offset >= src.Size {
			t.Fatalf("%s: resume record %+v", tc.format, last)
		}
		sent := srv.Sent.Load()
		rec, err := in.Install(context.Background(), src, d.target(t, "rootfs-b"), &last)
		if err != nil {
			t.Fatalf("%s: resumed: %v", tc.format, err)
		}
		if got := srv.LastRange(); got != "bytes="+strconv.FormatInt(last.Download.Offset, 10)+"-" {
			t.Errorf("%s: resumed with Range %q, the record is at %d", tc.format, got, last.Download.Offset)
		}
		if again := srv.Sent.Load() - sent; again != src.Size-last.Download.Offset {
			t.Errorf("%s: the resumed install fetched %d bytes, want %d", tc.format, again, src.Size-last.Download.Offset)
		}
		if !rec.Done || !d.holds("rootfs-b", raw) {
			t.Errorf("%s: done %v, slot whole %v", tc.format, rec.Done, d.holds("rootfs-b", raw))
		}
	}
}

// A resume record that does not fit the file (another image's, a file offset that is not
// its cursor's) starts the install over instead of writing a mix.
func TestInstallStaleResume(t *testing.T) {
	d, srv := newDevice(t), newServer(t)
	raw := testData(4, 1<<20)
	src := srv.put("a.aduimg", aduimgOf(t, raw, "2.0", nil))
	other := aduimgOf(t, testData(5, 1<<20), "3.0", nil)
	h, err := image.ParseHeader(bytes.NewReader(other))
	if err != nil {
		t.Fatal(err)
	}
	stale := Record{Format: FormatAduimg, Header: h.Encoded(), Download: download.NewState(src.Size, src.SHA256),
		Cursor: &slots.Cursor{Slot: "rootfs-b", Size: h.RawSize, Offset: 64 << 10, Chunk: 2, ChunkSize: h.ChunkSize}}
	stale.Download.Offset = 12345
	rec, err := d.installer(t).Install(context.Background(), src, d.target(t, "rootfs-b"), &stale)
	if err != nil || !rec.Done || !d.holds("rootfs-b", raw) {
		t.Fatalf("%v, done %v", err, rec.Done)
	}
}

// A file that is not the one its SHA-256 names never completes the slot: the download keeps
// its last bytes back, so the aduimg reader never hands out its last chunk and a raw file's
// last unit is not written (the raw file fills whole 1 MiB units, which the slot writer
// commits as soon as they are full).
func TestInstallFileHashMismatch(t *testing.T) {
	raw := testData(6, 2<<20)
	for _, format := range []string{FormatAduimg, FormatRaw} {
		d, srv := newDevice(t), newServer(t)
		file := raw
		if format == FormatAduimg {
			file = aduimgOf(t, raw, "2.0", nil)
		}
		src := srv.put(format, file)
		src.SHA256[0] ^= 1
		in := d.installer(t)
		in.AllowRaw = true
		_, err := in.Install(context.Background(), src, d.target(t, "rootfs-b"), nil)
		if !errors.Is(err, ErrFileHash) || !errors.Is(err, download.ErrHashMismatch) {
			t.Fatalf("%s: %v", format, err)
		}
		if got := d.file("rootfs-b"); len(got) >= len(raw) && bytes.Equal(got[len(raw)-100:len(raw)], raw[len(raw)-100:]) {
			t.Errorf("%s: the slot holds the end of a file that does not match its hash", format)
		}
	}
}

// An MCUboot image is checked at its end, before its TLV areas reach the slot: a bad
// signature or a security counter the caller's check refuses leaves the slot without them,
// and the check's error reaches the caller as it is.
func TestInstallMCUbootRefusedAtTheEnd(t *testing.T) {
	body := testData(7, 100<<10)
	good := mcubootOf(t, body, 3)
	img, err := mcuboot.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	sig := img.Find(mcuboot.TLVEd25519)
	bad := bytes.Clone(good)
	bad[sig.Offset+10] ^= 1
	low := errors.New("security counter below the floor")
	for _, tc := range []struct {
		name  string
		file  []byte
		check func(Info) error
		want  error
	}{
		{"bad signature", bad, nil, mcuboot.ErrBadSignature},
		{"refused counter", good, func(i Info) error {
			if i.SecurityCounter < 4 {
				return low
			}
			return nil
		}, low},
	} {
		d, srv := newDevice(t), newServer(t)
		in := d.installer(t)
		in.Check = tc.check
		_, err := in.Install(context.Background(), srv.put("app.bin", tc.file), d.target(t, "firmware-b"), nil)
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if d.holds("firmware-b", good[:img.End()]) {
			t.Errorf("%s: the slot holds the whole image", tc.name)
		}
	}
}

// What an MCUboot header says (its version) is judged before the first byte goes into the
// slot: an image refused for it leaves the slot as it was.
func TestInstallMCUbootRefusedFromTheHeader(t *testing.T) {
	d, srv := newDevice(t), newServer(t)
	before := testData(10, 256<<10)
	if err := os.WriteFile(filepath.Join(d.dir, "firmware-B"), before, 0o644); err != nil {
		t.Fatal(err)
	}
	older := errors.New("older than the running version")
	in := d.installer(t)
	m := &countMeter{}
	in.Meter = m
	in.Check = func(i Info) error {
		if i.Version == "2.0.0+0" {
			return older
		}
		return nil
	}
	_, err := in.Install(context.Background(), srv.put("app.bin", mcubootOf(t, testData(9, 100<<10), 5)), d.target(t, "firmware-b"), nil)
	if !errors.Is(err, older) {
		t.Fatalf("install: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(d.dir, "firmware-B")); !bytes.Equal(after, before) {
		t.Error("the slot was written before the version was refused")
	}
	if m.written > 0 {
		t.Errorf("%d bytes went to the slot writer before the version was refused", m.written)
	}
}

// countMeter counts the bytes a Meter is told of in the write stage.
type countMeter struct {
	stage   string
	written int64
}

func (m *countMeter) Stage(name string, total int64) { m.stage = name }
func (m *countMeter) Add(n int64) {
	if m.stage == StageWrite {
		m.written += n
	}
}

// Errors name their stage, and wrap their cause for result codes.
func TestInstallErrors(t *testing.T) {
	d, srv := newDevice(t), newServer(t)
	raw := testData(8, 300<<10)
	other, err := image.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		src   Source
		slot  string
		mod   func(*Installer)
		want  []error
		empty bool // the slot file was not even created
	}{
		{"not found", Source{URL: srv.URL + "/gone", Size: 10}, "rootfs-b", nil, []error{ErrDownload, download.ErrNotFound}, true},
		{"unknown key", srv.put("k.aduimg", aduimgOf(t, raw, "2.0", nil)), "rootfs-b", func(in *Installer) { in.Keyring = other }, []error{ErrImage, image.ErrUnknownKey}, true},
		{"other class", srv.put("fw.aduimg", aduimgOf(t, raw, "2.0", func(o *image.SignOptions) { o.SlotClass = "firmware" })), "rootfs-b", nil, []error{ErrSlotClass}, true},
		{"too large", srv.put("big.aduimg", aduimgOf(t, raw, "2.0", func(o *image.SignOptions) { o.SlotClass = "firmware" })), "firmware-b", nil, []error{ErrImage, image.ErrTooLarge}, true},
		{"raw too large", srv.put("big.raw", raw), "firmware-b", func(in *Installer) { in.AllowRaw = true }, []error{ErrImage, slots.ErrTooLarge}, true},
		{"raw not allowed", srv.put("r.raw", raw), "rootfs-b", nil, []error{ErrRawNotAllowed}, true},
	} {
		in := d.installer(t)
		if tc.mod != nil {
			tc.mod(in)
		}
		_, err := in.Install(context.Background(), tc.src, d.target(t, tc.slot), nil)
		for _, w := range tc.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: %v, want %v", tc.name, err, w)
			}
		}
		if _, serr := os.Stat(filepath.Join(d.dir, "rootfs-B")); tc.empty && serr == nil {
			t.Errorf("%s: the slot was opened", tc.name)
		}
	}
}

// A local stream (aduflash write) is read once as it is: no resume, and a hash is refused.
func TestInstallLocal(t *testing.T) {
	d := newDevice(t)
	raw := testData(9, 200<<10)
	img := aduimgOf(t, raw, "2.0", nil)
	in := d.installer(t)
	rec, err := in.Install(context.Background(), Source{Size: int64(len(img)), Local: bytes.NewReader(img)}, d.target(t, "rootfs-b"), nil)
	if err != nil || !rec.Done || !d.holds("rootfs-b", raw) {
		t.Fatalf("%v %+v", err, rec)
	}
	if _, err := in.Install(context.Background(), Source{Size: 1, SHA256: make([]byte, 32), Local: bytes.NewReader(nil)}, d.target(t, "rootfs-b"), nil); !errors.Is(err, ErrSource) {
		t.Errorf("a local file with a hash: %v", err)
	}
}

// Every resume point saved tells what is durable, though the download and the image's chunks
// are read ahead of the slot writer: the slot holds the payload up to the cursor, and the
// download's state is the one at the cursor's file offset (that offset, and the SHA-256
// state of the file up to it).
func TestInstallResumePointsMatchTheSlot(t *testing.T) {
	raw := testData(12, 2<<20+999)
	small := func(comp image.Compression) func(*image.SignOptions) {
		return func(o *image.SignOptions) { o.ChunkSize, o.Compression = 64<<10, comp }
	}
	for _, tc := range []struct {
		name, format string
		file         []byte
	}{
		{"aduimg zstd", FormatAduimg, aduimgOf(t, raw, "2.0", small(image.CompressZstd))},
		{"aduimg", FormatAduimg, aduimgOf(t, raw, "2.0", small(image.CompressNone))},
		{"raw", FormatRaw, raw},
	} {
		d, srv := newDevice(t), newServer(t)
		src := srv.put(tc.name, tc.file)
		fileOffset := func(c *slots.Cursor) int64 { return c.Offset }
		if tc.format == FormatAduimg {
			h, err := image.ParseHeader(bytes.NewReader(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			fileOffset = func(c *slots.Cursor) int64 { return frameStart(h, c.Chunk) }
		}
		in := d.installer(t)
		in.AllowRaw = true
		points := 0
		in.Save = func(rec Record) error {
			if rec.Done {
				return nil
			}
			points++
			c := rec.Cursor
			if want := fileOffset(c); rec.Download.Offset != want {
				t.Errorf("%s: cursor at %d (chunk %d) saved with the download at %d, want %d", tc.name, c.Offset, c.Chunk, rec.Download.Offset, want)
			}
			if !bytes.Equal(rec.Download.Hash, sha256State(t, tc.file[:rec.Download.Offset])) {
				t.Errorf("%s: the hash state saved at %d is not the one of the file up to there", tc.name, rec.Download.Offset)
			}
			if !d.holds("rootfs-b", raw[:c.Offset]) {
				t.Errorf("%s: cursor at %d saved before the slot holds the payload up to there", tc.name, c.Offset)
			}
			return nil
		}
		rec, err := in.Install(context.Background(), src, d.target(t, "rootfs-b"), nil)
		if err != nil || !rec.Done {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if points < 3 {
			t.Errorf("%s: %d resume points", tc.name, points)
		}
	}
}

// sha256State is the marshaled SHA-256 state after b, as download.State holds it.
func sha256State(t *testing.T, b []byte) []byte {
	h := sha256.New()
	h.Write(b)
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A write that fails (here: saving the first resume point) ends the install at once, though
// the chunk loader waits for bytes the server holds back: the download is ended under it.
func TestInstallWriteFailureEndsTheDownload(t *testing.T) {
	d := newDevice(t)
	file := aduimgOf(t, testData(13, 3<<20), "2.0", func(o *image.SignOptions) { o.ChunkSize, o.Compression = 64<<10, image.CompressNone })
	h, err := image.ParseHeader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	// The file slot's first resume point comes after its first 1 MiB unit (16 chunks), when
	// the loader is at chunk 17 or 18 (three chunks on their way): the server sends up to the
	// start of chunk 17, then nothing until the client goes.
	cut := h.Chunks[17].Offset + 100
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(file)))
		w.Write(file[:cut])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(release) })
	sum := sha256.Sum256(file)
	in := d.installer(t)
	cutPower := errors.New("power cut")
	in.Save = func(Record) error { return cutPower }
	_, err = in.Install(context.Background(), Source{URL: ts.URL, Size: int64(len(file)), SHA256: sum[:]}, d.target(t, "rootfs-b"), nil)
	if !errors.Is(err, cutPower) {
		t.Fatalf("install: %v", err)
	}
}
