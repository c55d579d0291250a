package image

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
)

var compressions = []Compression{CompressNone, CompressZstd}

func sizesFor(cs int) []int { return []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 17} }

func TestRoundTripAllKeysAndCompressions(t *testing.T) {
	for _, kt := range KeyTypes {
		key := testKeys.get(t, kt)
		kr := keyringFor(t, key)
		for _, comp := range compressions {
			for _, n := range sizesFor(MinChunkSize) {
				t.Run(fmt.Sprintf("%s/%s/%d", kt, comp, n), func(t *testing.T) {
					data := payload(n, uint64(n))
					opts := compressedOpts(comp)
					img, sh := sign(t, key, data, opts)
					got, h, err := readAll(t, img, VerifyOptions{Keyring: kr, MaxRawSize: int64(n)})
					if err != nil {
						t.Fatalf("read: %v", err)
					}
					if !bytes.Equal(got, data) {
						t.Fatalf("payload differs: got %d bytes, want %d", len(got), len(data))
					}
					checkHeader(t, h, key, data, opts)
					checkHeader(t, sh, key, data, opts)
					if !h.Verified() || sh.Verified() {
						t.Errorf("Verified: reader %v (want true), signer %v (want false)", h.Verified(), sh.Verified())
					}
					if !bytes.Equal(h.Encoded(), img[:h.Size]) || !bytes.Equal(sh.Encoded(), img[:h.Size]) {
						t.Error("Encoded() is not the header's bytes")
					}
					vh, err := Verify(bytes.NewReader(img), VerifyOptions{Keyring: kr})
					if err != nil || vh.RawSize != int64(n) {
						t.Fatalf("Verify: %v", err)
					}
				})
			}
		}
	}
}

func checkHeader(t *testing.T, h *Header, key crypto.Signer, data []byte, opts SignOptions) {
	t.Helper()
	id, _ := KeyIDOf(key.Public())
	kt, _ := TypeOf(key.Public())
	if h.KeyID != id || h.KeyType != kt {
		t.Errorf("key %s %s, want %s %s", h.KeyID, h.KeyType, id, kt)
	}
	if h.Version != opts.Version || h.SlotClass != opts.SlotClass || h.SecurityCounter != opts.SecurityCounter ||
		!h.Created.Equal(opts.Created) || h.Compression != opts.Compression || h.ChunkSize != opts.ChunkSize ||
		h.FormatVersion != FormatVersion {
		t.Errorf("header fields differ: %+v", h)
	}
	if !maps.Equal(h.Compatibility, opts.Compatibility) || !maps.Equal(h.Meta, opts.Meta) {
		t.Errorf("maps differ: %v %v", h.Compatibility, h.Meta)
	}
	if h.RawSize != int64(len(data)) || h.PayloadSHA256 != sha256.Sum256(data) {
		t.Errorf("raw size %d / payload hash %s wrong", h.RawSize, h.PayloadSHA256)
	}
	wantChunks := (len(data) + opts.ChunkSize - 1) / opts.ChunkSize
	if len(h.Chunks) != wantChunks {
		t.Fatalf("%d chunks, want %d", len(h.Chunks), wantChunks)
	}
	off := h.Size
	for i, c := range h.Chunks {
		lo := i * opts.ChunkSize
		hi := min(lo+opts.ChunkSize, len(data))
		if c.Index != i || c.RawOffset != int64(lo) || c.RawSize != hi-lo || c.SHA256 != sha256.Sum256(data[lo:hi]) || c.Offset != off {
			t.Errorf("chunk %d: %+v", i, c)
		}
		if h.Compression == CompressNone && (c.Compression != CompressNone || c.Length != c.RawSize) {
			t.Errorf("chunk %d of an uncompressed image: %+v", i, c)
		}
		off += int64(c.Length)
	}
	if h.ImageSize != off {
		t.Errorf("image size %d, frames end at %d", h.ImageSize, off)
	}
}

func TestDefaultChunkSizeAndCompression(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	kr := keyringFor(t, key)
	for _, n := range []int{DefaultChunkSize - 1, DefaultChunkSize + 1, 2*DefaultChunkSize + 12345} {
		data := payload(n, 3)
		opts := baseOpts()
		opts.ChunkSize = 0
		opts.Compression = CompressZstd
		img, h := sign(t, key, data, opts)
		if h.ChunkSize != DefaultChunkSize {
			t.Fatalf("chunk size %d", h.ChunkSize)
		}
		if h.ImageSize >= int64(n) {
			t.Errorf("zstd image of partly compressible data is %d bytes for %d raw", h.ImageSize, n)
		}
		got, _, err := readAll(t, img, VerifyOptions{Keyring: kr})
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read: %v", err)
		}
	}
}

func TestIncompressibleChunkStoredRaw(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	data := make([]byte, 2*MinChunkSize)
	opts := baseOpts()
	opts.Compression = CompressZstd
	// chunk 0: text (compressible); chunk 1: random bytes.
	for i := 0; i < MinChunkSize; i++ {
		data[i] = "abcabcabd"[i%9]
	}
	for i := MinChunkSize; i < 2*MinChunkSize; i++ {
		data[i] = byte(sha256.Sum256([]byte{byte(i), byte(i >> 8)})[0])
	}
	img, h := sign(t, key, data, opts)
	if h.Chunks[0].Compression != CompressZstd || h.Chunks[0].Length >= MinChunkSize {
		t.Errorf("chunk 0: %+v, want a small zstd frame", h.Chunks[0])
	}
	if h.Chunks[1].Compression != CompressNone || h.Chunks[1].Length != MinChunkSize {
		t.Errorf("chunk 1: %+v, want stored raw", h.Chunks[1])
	}
	got, _, err := readAll(t, img, VerifyOptions{Keyring: keyringFor(t, key)})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v", err)
	}
}

func TestZstdWindowCapped(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	for _, cs := range []int{MinChunkSize, 12 << 10, 1 << 20} {
		data := payload(3*cs+5, 4)
		opts := baseOpts()
		opts.ChunkSize = cs
		opts.Compression = CompressZstd
		img, h := sign(t, key, data, opts)
		for _, c := range h.Chunks {
			if c.Compression != CompressZstd {
				continue
			}
			var zh zstd.Header
			if err := zh.Decode(img[c.Offset : c.Offset+int64(c.Length)]); err != nil {
				t.Fatal(err)
			}
			if zh.WindowSize > uint64(min(cs, MaxZstdWindow)) || zh.HasCheckSum || zh.DictionaryID != 0 {
				t.Errorf("chunk size %d, chunk %d: window %d, checksum %v, dict %d", cs, c.Index, zh.WindowSize, zh.HasCheckSum, zh.DictionaryID)
			}
		}
	}
}

func TestRejectsFrameWithLargeWindow(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	opts := baseOpts()
	opts.Compression = CompressZstd
	raw := bytes.Repeat([]byte("0123456789"), MinChunkSize/10+1)[:MinChunkSize]
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(1<<20), zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	frame := enc.EncodeAll(raw, nil)
	var zh zstd.Header
	if err := zh.Decode(frame); err != nil || zh.WindowSize <= MinChunkSize {
		t.Fatalf("test frame has window %d (%v)", zh.WindowSize, err)
	}
	img := craft(t, key, opts, raw, [][]byte{frame}, []Compression{CompressZstd}, nil)
	got, _, err := readAll(t, img, VerifyOptions{Keyring: keyringFor(t, key)})
	var ce *ChunkError
	if !errors.Is(err, ErrChunkHash) || !errors.As(err, &ce) || ce.Index != 0 || !errors.Is(err, zstd.ErrWindowSizeExceeded) || len(got) != 0 {
		t.Fatalf("got %d bytes, err %v; want ErrChunkHash wrapping ErrWindowSizeExceeded", len(got), err)
	}
}

func TestFrameDecodingToWrongSize(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	opts := baseOpts()
	opts.Compression = CompressZstd
	raw := bytes.Repeat([]byte("a"), 2*MinChunkSize)
	enc, _ := zstd.NewWriter(nil)
	short := enc.EncodeAll(raw[:100], nil)                                // decodes to too few bytes
	long := enc.EncodeAll(bytes.Repeat([]byte("a"), 3*MinChunkSize), nil) // too many, yet small
	img := craft(t, key, opts, raw, [][]byte{short, long}, []Compression{CompressZstd, CompressZstd}, nil)
	_, _, err := readAll(t, img, VerifyOptions{Keyring: keyringFor(t, key)})
	var ce *ChunkError
	if !errors.As(err, &ce) || ce.Index != 0 || !errors.Is(err, ErrChunkHash) {
		t.Fatalf("err %v, want a *ChunkError for chunk 0", err)
	}
	good := enc.EncodeAll(raw[:MinChunkSize], nil)
	img = craft(t, key, opts, raw, [][]byte{good, long}, []Compression{CompressZstd, CompressZstd}, nil)
	got, _, err := readAll(t, img, VerifyOptions{Keyring: keyringFor(t, key)})
	if !errors.As(err, &ce) || ce.Index != 1 || ce.Offset != MinChunkSize || !bytes.Equal(got, raw[:MinChunkSize]) {
		t.Fatalf("got %d bytes, err %v, want chunk 0 then a *ChunkError for chunk 1", len(got), err)
	}
}

func TestSmallReads(t *testing.T) {
	key := testKeys.get(t, ECDSAP256)
	kr := keyringFor(t, key)
	for _, comp := range compressions {
		data := payload(3*MinChunkSize+100, 5)
		opts := compressedOpts(comp)
		img, _ := sign(t, key, data, opts)
		// Source delivering one byte per Read, consumer reading 1..13 bytes at a time.
		rd, err := NewReader(iotest.OneByteReader(bytes.NewReader(img)), VerifyOptions{Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		buf := make([]byte, 13)
		for i := 0; ; i++ {
			n, err := rd.Read(buf[:1+i%13])
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rd.RawOffset() != int64(len(got)) {
				t.Fatalf("RawOffset %d after %d bytes", rd.RawOffset(), len(got))
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: payload differs", comp)
		}
		// Errors are sticky.
		if n, err := rd.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read after EOF: %d, %v", n, err)
		}
		rd, _ = NewReader(bytes.NewReader(img), VerifyOptions{Keyring: kr})
		if err := iotest.TestReader(rd, data); err != nil {
			t.Fatalf("%s: iotest.TestReader: %v", comp, err)
		}
	}
}

func TestResume(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	kr := keyringFor(t, key)
	for _, comp := range compressions {
		data := payload(5*MinChunkSize+321, 6)
		opts := compressedOpts(comp)
		img, _ := sign(t, key, data, opts)
		for i := 0; i <= 6; i++ {
			rd, err := NewReaderAt(bytes.NewReader(img), i, VerifyOptions{Keyring: kr})
			if err != nil {
				t.Fatalf("NewReaderAt(%d): %v", i, err)
			}
			from := min(i*MinChunkSize, len(data))
			if rd.RawOffset() != int64(from) {
				t.Errorf("chunk %d: RawOffset %d, want %d", i, rd.RawOffset(), from)
			}
			got, err := io.ReadAll(rd)
			if err != nil || !bytes.Equal(got, data[from:]) {
				t.Fatalf("%s: resume at chunk %d: %d bytes, %v", comp, i, len(got), err)
			}
			// A reader already at the frame, as after an HTTP Range request.
			h := rd.Header()
			off := h.ImageSize
			if i < len(h.Chunks) {
				off = h.Chunks[i].Offset
			}
			cr, err := NewChunkReader(h, bytes.NewReader(img[off:]), i)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(cr); err != nil || !bytes.Equal(got, data[from:]) {
				t.Fatalf("NewChunkReader(%d): %d bytes, %v", i, len(got), err)
			}
			// Trailing bytes are still caught after a resume.
			cr, _ = NewChunkReader(h, bytes.NewReader(append(bytes.Clone(img[off:]), 0)), i)
			if _, err := io.ReadAll(cr); !errors.Is(err, ErrTrailingData) {
				t.Fatalf("resume at %d with a trailing byte: %v", i, err)
			}
		}
		if _, err := NewReaderAt(bytes.NewReader(img), 7, VerifyOptions{Keyring: kr}); err == nil {
			t.Error("NewReaderAt past the last chunk succeeded")
		}
		if _, err := NewReaderAt(bytes.NewReader(img), -1, VerifyOptions{Keyring: kr}); err == nil {
			t.Error("NewReaderAt(-1) succeeded")
		}
		// An unverified header is refused.
		ph, err := ParseHeader(bytes.NewReader(img))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewChunkReader(ph, bytes.NewReader(img[ph.Size:]), 0); err == nil {
			t.Error("NewChunkReader accepted an unverified header")
		}
		// The header bytes kept in a journal verify again.
		if _, err := ReadHeader(bytes.NewReader(ph.Encoded()), VerifyOptions{Keyring: kr}); err != nil {
			t.Errorf("ReadHeader(Encoded()): %v", err)
		}
	}
}

func TestResumeIgnoresCallerMutation(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	kr := keyringFor(t, key)
	data := payload(2*MinChunkSize, 7)
	img, _ := sign(t, key, data, baseOpts())
	h, err := ReadHeader(bytes.NewReader(img), VerifyOptions{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	evil := append([]byte(nil), data...)
	evil[0] ^= 1
	h.Chunks[0].SHA256 = sha256.Sum256(evil[:MinChunkSize])
	if err := h.VerifyChunk(0, evil[:MinChunkSize]); !errors.Is(err, ErrChunkHash) {
		t.Errorf("VerifyChunk after mutating Chunks: %v", err)
	}
	bad := append(bytes.Clone(img[:h.Size]), evil...)
	cr, _ := NewChunkReader(h, bytes.NewReader(bad[h.Size:]), 0)
	if _, err := io.ReadAll(cr); !errors.Is(err, ErrChunkHash) {
		t.Errorf("reader trusted a mutated header: %v", err)
	}
}

func TestVerifyChunk(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	data := payload(3*MinChunkSize+5, 8)
	_, h := sign(t, key, data, baseOpts())
	for i := range h.Chunks {
		lo := i * MinChunkSize
		hi := min(lo+MinChunkSize, len(data))
		if err := h.VerifyChunk(i, data[lo:hi]); err != nil {
			t.Errorf("chunk %d: %v", i, err)
		}
		bad := bytes.Clone(data[lo:hi])
		bad[len(bad)-1] ^= 0x80
		err := h.VerifyChunk(i, bad)
		var ce *ChunkError
		if !errors.Is(err, ErrChunkHash) || !errors.As(err, &ce) || ce.Index != i || ce.Offset != int64(lo) {
			t.Errorf("chunk %d corrupted: %v", i, err)
		}
		if err := h.VerifyChunk(i, data[lo:hi-1]); !errors.Is(err, ErrChunkHash) {
			t.Errorf("chunk %d short: %v", i, err)
		}
	}
	if err := h.VerifyChunk(4, nil); err == nil || errors.Is(err, ErrChunkHash) {
		t.Errorf("chunk index out of range: %v", err)
	}
}

func TestConcurrencyDoesNotChangeTheImage(t *testing.T) {
	key := testKeys.get(t, Ed25519) // deterministic signatures
	data := payload(37*MinChunkSize+99, 11)
	for _, comp := range compressions {
		opts := compressedOpts(comp)
		opts.Concurrency = 1
		want, _ := sign(t, key, data, opts)
		for _, c := range []int{2, 3, 8} {
			opts.Concurrency = c
			if got, _ := sign(t, key, data, opts); !bytes.Equal(got, want) {
				t.Errorf("%s: concurrency %d made a different image", comp, c)
			}
		}
	}
}

func TestSignTruncatesFile(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	path := filepath.Join(t.TempDir(), "fw.aduimg")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xee}, 100000), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := payload(5000, 12)
	_, n, err := Sign(f, bytes.NewReader(data), int64(len(data)), key, baseOpts())
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := f.Stat(); fi.Size() != n {
		t.Fatalf("file is %d bytes, image %d", fi.Size(), n)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(f, VerifyOptions{Keyring: keyringFor(t, key)}); err != nil {
		t.Fatal(err)
	}
}

func TestHeaderJSON(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	data := payload(MinChunkSize+1, 13)
	opts := baseOpts()
	opts.Compression = CompressZstd
	_, h := sign(t, key, data, opts)
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`"payload_sha256":"` + h.PayloadSHA256.String() + `"`,
		`"key_id":"` + h.KeyID.String() + `"`,
		`"sha256":"` + h.Chunks[0].SHA256.String() + `"`,
		`"compression":"zstd"`, `"key_type":"ed25519"`, `"version":"1.2.3"`, `"slot_class":"rootfs"`,
		`"security_counter":7`, `"created":"2026-03-14T15:09:26Z"`, `"raw_size":4097`, `"chunk_size":4096`,
		`"signature":"` + h.Signature.String() + `"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s:\n%s", want, s)
		}
	}
	var back Header
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.PayloadSHA256 != h.PayloadSHA256 || back.KeyID != h.KeyID || back.Compression != h.Compression || len(back.Chunks) != 2 {
		t.Errorf("JSON round trip: %+v", back)
	}
}

func TestCompressionNames(t *testing.T) {
	for _, c := range compressions {
		p, err := ParseCompression(c.String())
		if err != nil || p != c {
			t.Errorf("%v: %v %v", c, p, err)
		}
	}
	if _, err := ParseCompression("gzip"); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("gzip: %v", err)
	}
	if Compression(9).String() != "compression(9)" {
		t.Error(Compression(9).String())
	}
	if _, err := json.Marshal(Compression(9)); err == nil {
		t.Error("unknown compression marshals")
	}
}

func TestIsImage(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	img, _ := sign(t, key, []byte("x"), baseOpts())
	if !IsImage(img) || !IsImage(img[:8]) || IsImage(img[:7]) || IsImage([]byte("hsqs....")) || IsImage(nil) {
		t.Error("IsImage")
	}
}

func TestCheckDowngrade(t *testing.T) {
	h := &Header{Version: "2.0", SecurityCounter: 5}
	for dev, ok := range map[uint64]bool{0: true, 4: true, 5: true, 6: false, 1 << 63: false} {
		err := h.CheckDowngrade(dev)
		if ok != (err == nil) || (!ok && !errors.Is(err, ErrDowngrade)) {
			t.Errorf("device %d: %v", dev, err)
		}
	}
}

func TestCreatedDefaultsToNow(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	opts := baseOpts()
	opts.Created = time.Time{}
	before := time.Now().Add(-time.Second)
	_, h := sign(t, key, []byte("abc"), opts)
	if h.Created.Before(before.Truncate(time.Second)) || h.Created.After(time.Now()) || h.Created.Location() != time.UTC {
		t.Errorf("created %v", h.Created)
	}
}
