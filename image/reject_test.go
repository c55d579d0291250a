package image

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/aduflash/aduflash/image/imagetest"
)

// headerErrors are the errors a damaged header may legitimately produce.
var headerErrors = []error{ErrBadMagic, ErrUnsupportedVersion, ErrHeaderTooLarge, ErrMalformedHeader,
	ErrTruncated, ErrUnknownKey, ErrRevokedKey, ErrBadSignature}

func smallImage(t *testing.T, comp Compression) ([]byte, []byte, *Keyring) {
	t.Helper()
	key := testKeys.get(t, Ed25519)
	data := payload(3*MinChunkSize+50, 21)
	opts := compressedOpts(comp)
	img, _ := sign(t, key, data, opts)
	return img, data, keyringFor(t, key)
}

func TestRejectBadMagic(t *testing.T) {
	img, _, kr := smallImage(t, CompressNone)
	for i := 0; i < len(Magic); i++ {
		bad := bytes.Clone(img)
		bad[i] ^= 0x20
		_, err := Verify(bytes.NewReader(bad), VerifyOptions{Keyring: kr})
		if !errors.Is(err, ErrBadMagic) || !strings.Contains(err.Error(), "offset 0") {
			t.Errorf("byte %d: %v", i, err)
		}
		if _, err := ParseHeader(bytes.NewReader(bad[:i+1])); !errors.Is(err, ErrBadMagic) {
			t.Errorf("%d-byte prefix with a bad byte: %v", i+1, err)
		}
	}
	if _, err := ParseHeader(strings.NewReader("hsqs, a squashfs image, not ours")); !errors.Is(err, ErrBadMagic) {
		t.Error(err)
	}
}

func TestRejectVersion(t *testing.T) {
	img, _, kr := smallImage(t, CompressNone)
	for _, v := range []uint16{0, 2, 0xffff} {
		bad := bytes.Clone(img)
		le16(bad[8:], v)
		_, err := Verify(bytes.NewReader(bad), VerifyOptions{Keyring: kr})
		if !errors.Is(err, ErrUnsupportedVersion) || !strings.Contains(err.Error(), fmt.Sprintf("format version %d", v)) {
			t.Errorf("version %d: %v", v, err)
		}
	}
}

func TestRejectHeaderTooLargeBeforeAllocating(t *testing.T) {
	img, _, kr := smallImage(t, CompressNone)
	for _, hs := range []uint32{MaxHeaderSize + 1, math.MaxUint32} {
		bad := bytes.Clone(img[:prefixSize])
		le32(bad[12:], hs)
		allocated := imagetest.AllocatedDuring(func() {
			_, err := Verify(bytes.NewReader(bad), VerifyOptions{Keyring: kr})
			if !errors.Is(err, ErrHeaderTooLarge) || !strings.Contains(err.Error(), "offset 12") {
				t.Errorf("header size %d: %v", hs, err)
			}
		})
		if allocated > 1<<20 {
			t.Errorf("header size %d: %d bytes allocated before refusing", hs, allocated)
		}
	}
	// A header of the maximal size that the stream does not deliver costs little memory either.
	bad := bytes.Clone(img[:prefixSize])
	le32(bad[12:], MaxHeaderSize)
	allocated := imagetest.AllocatedDuring(func() {
		if _, err := ParseHeader(bytes.NewReader(bad)); !errors.Is(err, ErrTruncated) {
			t.Errorf("16 MiB header announced, 16 bytes given: %v", err)
		}
	})
	if allocated > 1<<20 {
		t.Errorf("%d bytes allocated for a 16-byte stream", allocated)
	}
}

// TestRejectMalformedFields damages single fields so that the header no longer parses.
func TestRejectMalformedFields(t *testing.T) {
	img, _, kr := smallImage(t, CompressZstd)
	h, err := ParseHeader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	ml := int(get32(img[68:]))
	ct := fixedSize + ml // chunk table
	so := int(h.Size) - sigBlockSize
	cases := []struct {
		name  string
		mut   func(b []byte)
		field string // must appear in the message
	}{
		{"reserved 10", func(b []byte) { b[10] = 1 }, "offset 10"},
		{"key type 0", func(b []byte) { b[32] = 0 }, "offset 32 (key type)"},
		{"key type 6", func(b []byte) { b[32] = 6 }, "offset 32 (key type)"},
		{"compression 2", func(b []byte) { b[33] = 2 }, "offset 33 (compression)"},
		{"reserved 34", func(b []byte) { b[35] = 1 }, "offset 34"},
		{"chunk size 0", func(b []byte) { le32(b[36:], 0) }, "offset 36 (chunk size)"},
		{"chunk size unaligned", func(b []byte) { le32(b[36:], MinChunkSize+1) }, "offset 36 (chunk size)"},
		{"chunk size huge", func(b []byte) { le32(b[36:], 2*MaxChunkSize) }, "offset 36 (chunk size)"},
		{"raw size", func(b []byte) { le64(b[40:], uint64(h.RawSize+MinChunkSize)) }, "offset 64 (chunk count)"},
		{"raw size 2^64-1", func(b []byte) { le64(b[40:], math.MaxUint64) }, "offset 64 (chunk count)"},
		{"created negative", func(b []byte) { le64(b[56:], math.MaxUint64) }, "offset 56 (created)"},
		{"created year 10000", func(b []byte) { le64(b[56:], maxCreated+1) }, "offset 56 (created)"},
		{"chunk count", func(b []byte) { le32(b[64:], 5) }, "offset 64 (chunk count)"},
		{"metadata size +1", func(b []byte) { le32(b[68:], uint32(ml+1)) }, "offset 12 (header size)"},
		{"metadata size huge", func(b []byte) { le32(b[68:], MaxMetadataSize+1) }, "offset 68 (metadata size)"},
		{"header size +48", func(b []byte) { le32(b[12:], uint32(h.Size+48)) }, "header size"},
		{"header size tiny", func(b []byte) { le32(b[12:], 100) }, "offset 12 (header size)"},
		{"version length 0", func(b []byte) { le16(b[fixedSize:], 0) }, "offset 104 (version)"},
		{"version length past end", func(b []byte) { le16(b[fixedSize:], 0xffff) }, "offset 104 (version)"},
		{"version control char", func(b []byte) { b[fixedSize+2] = '\n' }, "offset 106 (version)"},
		{"version invalid UTF-8", func(b []byte) { b[fixedSize+2] = 0xff }, "offset 106 (version)"},
		{"first frame offset", func(b []byte) { le64(b[ct+32:], uint64(h.Size+1)) }, fmt.Sprintf("offset %d (chunk 0 frame offset)", ct+32)},
		{"second frame offset", func(b []byte) { le64(b[ct+48+32:], 0) }, fmt.Sprintf("offset %d (chunk 1 frame offset)", ct+48+32)},
		{"frame length 0", func(b []byte) { le32(b[ct+40:], 0) }, "(chunk 0 frame length)"},
		{"frame length > raw", func(b []byte) { le32(b[ct+40:], MinChunkSize+1) }, "(chunk 0 frame length)"},
		{"chunk compression 2", func(b []byte) { b[ct+44] = 2 }, "(chunk 0 compression)"},
		{"chunk reserved", func(b []byte) { b[ct+48+47] = 1 }, "(chunk 1 reserved)"},
		{"signature length 0", func(b []byte) { le16(b[so:], 0) }, fmt.Sprintf("offset %d (signature length)", so)},
		{"signature length 65", func(b []byte) { le16(b[so:], 65) }, "(signature length)"},
		{"signature block reserved", func(b []byte) { b[so+2] = 1 }, fmt.Sprintf("offset %d (reserved)", so+2)},
		{"signature padding", func(b []byte) { b[so+4+64] = 1 }, fmt.Sprintf("offset %d (signature padding)", so+4+64)},
	}
	for _, c := range cases {
		bad := bytes.Clone(img)
		c.mut(bad)
		_, err := ParseHeader(bytes.NewReader(bad))
		if !errors.Is(err, ErrMalformedHeader) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: ParseHeader: %v; want ErrMalformedHeader naming %q", c.name, err, c.field)
		}
		// Damage to the metadata or the chunk table is refused by the signature, unparsed.
		want := ErrMalformedHeader
		if at := firstDifference(img, bad); at >= fixedSize && at < so {
			want = ErrBadSignature
		}
		if _, err := Verify(bytes.NewReader(bad), VerifyOptions{Keyring: kr}); !errors.Is(err, want) {
			t.Errorf("%s: Verify: %v; want %v", c.name, err, want)
		}
	}
}

// TestRejectMalformedSigned covers rules that need a consistent, validly signed header to reach.
func TestRejectMalformedSigned(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	kr := keyringFor(t, key)
	raw := payload(2*MinChunkSize, 22)
	frames := [][]byte{raw[:MinChunkSize], raw[MinChunkSize:]}
	comps := []Compression{CompressNone, CompressNone}
	opts := baseOpts()
	str := func(s string) []byte { return appendStr(nil, s) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	u16 := func(v uint16) []byte { b := make([]byte, 2); le16(b, v); return b }
	cases := []struct {
		name   string
		mutate func(h *Header, meta *[]byte)
		field  string
	}{
		{"unsorted compatibility keys", func(h *Header, m *[]byte) {
			*m = cat(str("1.0"), str(""), u16(2), str("model"), str("x"), str("manufacturer"), str("y"), u16(0))
		}, "compatibility[1] key"},
		{"duplicate meta keys", func(h *Header, m *[]byte) {
			*m = cat(str("1.0"), str(""), u16(0), u16(2), str("k"), str("1"), str("k"), str("2"))
		}, "meta[1] key"},
		{"empty key", func(h *Header, m *[]byte) {
			*m = cat(str("1.0"), str(""), u16(1), str(""), str("x"), u16(0))
		}, "compatibility[0] key"},
		{"value not UTF-8", func(h *Header, m *[]byte) {
			*m = cat(str("1.0"), str(""), u16(0), u16(1), str("k"), str("\xff"))
		}, `meta["k"] value`},
		{"metadata left over", func(h *Header, m *[]byte) {
			*m = cat(str("1.0"), str(""), u16(0), u16(0), []byte{0})
		}, "metadata size"},
		{"metadata cut short", func(h *Header, m *[]byte) {
			*m = cat(str("1.0"), str(""), u16(0))
		}, "meta count"},
		{"count past the end", func(h *Header, m *[]byte) {
			*m = cat(str("1.0"), str(""), u16(3), str("a"), str("b"))
		}, "compatibility[1] key"},
		{"zstd chunk in an uncompressed image", func(h *Header, m *[]byte) {
			h.Chunks[1].Compression = CompressZstd
		}, "(chunk 1 compression)"},
	}
	for _, c := range cases {
		img := craft(t, key, opts, raw, frames, comps, c.mutate)
		_, err := Verify(bytes.NewReader(img), VerifyOptions{Keyring: kr})
		if !errors.Is(err, ErrMalformedHeader) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v; want ErrMalformedHeader naming %q", c.name, err, c.field)
		}
	}
	// The same crafting without damage verifies, so the cases above fail for their reason.
	img := craft(t, key, opts, raw, frames, comps, nil)
	if got, _, err := readAll(t, img, VerifyOptions{Keyring: kr}); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("undamaged crafted image: %v", err)
	}
}

// TestEveryHeaderByteIsProtected flips each bit pattern of every header byte: the image must
// never verify, and the error must be one of the header errors.
func TestEveryHeaderByteIsProtected(t *testing.T) {
	for _, comp := range compressions {
		img, _, kr := smallImage(t, comp)
		hs := int(get32(img[12:]))
		for i := 0; i < hs; i++ {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				bad := bytes.Clone(img)
				bad[i] ^= x
				_, err := Verify(bytes.NewReader(bad), VerifyOptions{Keyring: kr})
				if err == nil {
					t.Fatalf("%s: header byte %d ^ %#x: image still verifies", comp, i, x)
				}
				if !isAny(err, headerErrors...) {
					t.Fatalf("%s: header byte %d ^ %#x: unexpected error %v", comp, i, x, err)
				}
			}
		}
	}
}

func TestRejectSignature(t *testing.T) {
	img, _, kr := smallImage(t, CompressNone)
	hs := int(get32(img[12:]))
	so := hs - SignatureSlotSize
	for _, i := range []int{0, 1, 31, 32, 63} {
		bad := bytes.Clone(img)
		bad[so+i] ^= 1
		_, err := Verify(bytes.NewReader(bad), VerifyOptions{Keyring: kr})
		if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", so)) {
			t.Errorf("signature byte %d: %v", i, err)
		}
	}
	// Signed fields that parse fine after a change: only the signature catches them.
	for _, off := range []int{40 + 0 /* raw size: needs count too, so no */, 48, 56, 72, 80, fixedSize + 2} {
		if off == 40 {
			continue
		}
		bad := bytes.Clone(img)
		bad[off] ^= 1
		if _, err := Verify(bytes.NewReader(bad), VerifyOptions{Keyring: kr}); !errors.Is(err, ErrBadSignature) {
			t.Errorf("byte %d: %v", off, err)
		}
	}
}

func TestRejectKeys(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	other := testKeys.get(t, ECDSAP256)
	data := payload(100, 23)
	img, h := sign(t, key, data, baseOpts())

	_, err := Verify(bytes.NewReader(img), VerifyOptions{Keyring: keyringFor(t, other)})
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), h.KeyID.String()) {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := Verify(bytes.NewReader(img), VerifyOptions{}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("no keyring: %v", err)
	}
	kr := keyringFor(t, key, other)
	kr.Revoke(h.KeyID) // revoked beats trusted
	_, err = Verify(bytes.NewReader(img), VerifyOptions{Keyring: kr})
	if !errors.Is(err, ErrRevokedKey) || !strings.Contains(err.Error(), h.KeyID.String()) {
		t.Errorf("revoked key: %v", err)
	}

	// A header naming key A's id but signed by key B of the same type.
	imposter, err := GenerateKey(Ed25519, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(img)
	resign(t, imposter, bad)
	if _, err := Verify(bytes.NewReader(bad), VerifyOptions{Keyring: keyringFor(t, key)}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("signed by another key: %v", err)
	}

	// A header whose key type disagrees with the key its id names.
	rsa2 := testKeys.get(t, RSA2048)
	raw := []byte("payload")
	opts := baseOpts()
	img2 := craft(t, rsa2, opts, raw, [][]byte{raw}, []Compression{CompressNone}, func(h *Header, _ *[]byte) {
		h.KeyType = RSA3072
	})
	// craft signed with the rsa-2048 key (256 bytes); make the length plausible for rsa-3072.
	hs := int(get32(img2[12:]))
	le16(img2[hs-sigBlockSize:], 384)
	_, err = Verify(bytes.NewReader(img2), VerifyOptions{Keyring: keyringFor(t, rsa2)})
	if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "rsa-3072") {
		t.Errorf("key type mismatch: %v", err)
	}
}

func TestRejectTooLarge(t *testing.T) {
	img, data, kr := smallImage(t, CompressNone)
	n := int64(len(data))
	if _, err := Verify(bytes.NewReader(img), VerifyOptions{Keyring: kr, MaxRawSize: n}); err != nil {
		t.Errorf("raw size == limit: %v", err)
	}
	_, err := Verify(bytes.NewReader(img), VerifyOptions{Keyring: kr, MaxRawSize: n - 1})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(n)) {
		t.Errorf("raw size > limit: %v", err)
	}
	_, err = Verify(bytes.NewReader(img), VerifyOptions{Keyring: kr, MaxChunkSize: MinChunkSize - 1})
	if !errors.Is(err, ErrChunkTooLarge) || errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "chunk size 4096") {
		t.Errorf("chunk size > limit: %v", err)
	}
}

// TestRefusedFromTheFixedPart: what the 104-byte fixed part of a header can tell refuses the
// image before the rest of the header is read: an unknown key, a key of another type, a payload
// larger than the target, chunks larger than the reader takes.
func TestRefusedFromTheFixedPart(t *testing.T) {
	img, data, kr := smallImage(t, CompressNone)
	rsa, err := GenerateKey(RSA2048, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Clone(img)
	rsaID, _ := KeyIDOf(rsa.Public())
	copy(other[16:32], rsaID[:]) // the id of an RSA key, the type of the image's ed25519 key
	for _, c := range []struct {
		name string
		img  []byte
		opts VerifyOptions
		want error
	}{
		{"unknown key", img, VerifyOptions{Keyring: keyringFor(t, rsa)}, ErrUnknownKey},
		{"key of another type", other, VerifyOptions{Keyring: keyringFor(t, rsa)}, ErrBadSignature},
		{"payload larger than the target", img, VerifyOptions{Keyring: kr, MaxRawSize: int64(len(data)) - 1}, ErrTooLarge},
		{"chunks larger than the reader takes", img, VerifyOptions{Keyring: kr, MaxChunkSize: MinChunkSize - ChunkAlign/2}, ErrChunkTooLarge},
		{"header larger than the reader takes", img, VerifyOptions{Keyring: kr, MaxHeaderSize: fixedSize}, ErrHeaderTooLarge},
	} {
		r := &countingReader{r: bytes.NewReader(c.img)}
		if _, err := NewReader(r, c.opts); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if r.n != fixedSize {
			t.Errorf("%s: %d bytes read before refusing, want the %d of the fixed part", c.name, r.n, fixedSize)
		}
	}
}

// firstDifference returns the offset of the first byte in which a and b differ.
func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestForgedHeaderIsNotParsed: a header nobody signed that announces the most chunks a header can
// hold (349 512 in 16 MiB) costs little before it is refused: nothing when the fixed part already
// refuses it, and no more than reading it when only the signature does (its chunk table is
// never parsed, which would cost 80 bytes a chunk).
func TestForgedHeaderIsNotParsed(t *testing.T) {
	img, _, kr := smallImage(t, CompressNone)
	forged := imagetest.ForgedHeader(img, imagetest.MaxChunks)
	if h, err := ParseHeader(bytes.NewReader(forged)); err != nil || len(h.Chunks) != imagetest.MaxChunks {
		t.Fatalf("the forged header does not parse, so it tests nothing: %v", err)
	}
	// Reading a header costs up to 4/3 of its size: its buffer grows as the stream delivers.
	read := uint64(len(forged))*4/3 + 1<<20
	for _, c := range []struct {
		name   string
		opts   VerifyOptions
		want   error
		budget uint64
	}{
		{"unknown key", VerifyOptions{Keyring: keyringFor(t, testKeys.get(t, ECDSAP256))}, ErrUnknownKey, 1 << 20},
		{"larger than the target", VerifyOptions{Keyring: kr, MaxRawSize: 256 << 20}, ErrTooLarge, 1 << 20},
		{"bad signature", VerifyOptions{Keyring: kr}, ErrBadSignature, read},
	} {
		var err error
		allocated := imagetest.AllocatedDuring(func() { _, err = ReadHeader(bytes.NewReader(forged), c.opts) })
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if allocated > c.budget {
			t.Errorf("%s: %d bytes allocated before refusing a %d-byte header, want at most %d", c.name, allocated, len(forged), c.budget)
		}
	}
}

func TestRejectCorruptFrames(t *testing.T) {
	for _, comp := range compressions {
		img, data, kr := smallImage(t, comp)
		h, _ := ParseHeader(bytes.NewReader(img))
		for _, c := range h.Chunks {
			for _, at := range []int{0, c.Length / 2, c.Length - 1} {
				bad := bytes.Clone(img)
				bad[c.Offset+int64(at)] ^= 0x10
				got, _, err := readAll(t, bad, VerifyOptions{Keyring: kr})
				var ce *ChunkError
				if !errors.Is(err, ErrChunkHash) || !errors.As(err, &ce) {
					t.Fatalf("%s chunk %d byte %d: %v", comp, c.Index, at, err)
				}
				if ce.Index != c.Index || ce.Offset != c.RawOffset || ce.FrameOffset != c.Offset ||
					!strings.Contains(err.Error(), fmt.Sprintf("chunk %d (payload offset %d", c.Index, c.RawOffset)) {
					t.Errorf("%s chunk %d: error names %+v: %v", comp, c.Index, ce, err)
				}
				// Nothing of the corrupted chunk (or later) was handed out.
				if !bytes.Equal(got, data[:c.RawOffset]) {
					t.Errorf("%s chunk %d: reader returned %d bytes, want exactly the %d before the chunk", comp, c.Index, len(got), c.RawOffset)
				}
			}
		}
	}
}

// TestNothingBeforeVerification: NewReader consumes the header only, and with a bad
// signature returns no Reader at all; a corrupt chunk's bytes never reach the caller's buffer.
func TestNothingBeforeVerification(t *testing.T) {
	img, data, kr := smallImage(t, CompressNone)
	hs := int64(get32(img[12:]))
	src := &countingReader{r: bytes.NewReader(img)}
	rd, err := NewReader(src, VerifyOptions{Keyring: kr})
	if err != nil || src.n != hs {
		t.Fatalf("NewReader read %d bytes (header %d): %v", src.n, hs, err)
	}
	bad := bytes.Clone(img)
	bad[hs-SignatureSlotSize] ^= 1
	src = &countingReader{r: bytes.NewReader(bad)}
	rd, err = NewReader(src, VerifyOptions{Keyring: kr})
	if rd != nil || !errors.Is(err, ErrBadSignature) || src.n != hs {
		t.Fatalf("bad signature: reader %v, %d bytes consumed, %v", rd, src.n, err)
	}

	// Corrupt the last byte of chunk 1; read with a buffer larger than the image and one
	// pre-filled with a marker: the marker must survive where chunk 1 would go.
	bad = bytes.Clone(img)
	bad[hs+2*MinChunkSize-1] ^= 1
	rd, err = NewReader(bytes.NewReader(bad), VerifyOptions{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0xA5}, 2*len(data))
	n := 0
	for {
		m, err := rd.Read(buf[n:])
		n += m
		if err != nil {
			if !errors.Is(err, ErrChunkHash) {
				t.Fatalf("err %v", err)
			}
			break
		}
	}
	if n != MinChunkSize || !bytes.Equal(buf[:n], data[:n]) || !bytes.Equal(buf[n:], bytes.Repeat([]byte{0xA5}, len(buf)-n)) {
		t.Fatalf("reader returned %d bytes / touched the buffer beyond them", n)
	}
	// WriteTo stops the same way.
	rd, _ = NewReader(bytes.NewReader(bad), VerifyOptions{Keyring: kr})
	var out bytes.Buffer
	if _, err := rd.WriteTo(&out); !errors.Is(err, ErrChunkHash) || !bytes.Equal(out.Bytes(), data[:MinChunkSize]) {
		t.Fatalf("WriteTo: %d bytes, %v", out.Len(), err)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestRejectTruncated(t *testing.T) {
	for _, comp := range compressions {
		img, data, kr := smallImage(t, comp)
		h, _ := ParseHeader(bytes.NewReader(img))
		for cut := 0; cut < len(img); cut++ {
			got, _, err := readAll(t, img[:cut], VerifyOptions{Keyring: kr})
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("%s: cut at %d of %d: %v", comp, cut, len(img), err)
			}
			if cut > int(h.Size) && !strings.Contains(err.Error(), fmt.Sprintf("image offset %d", cut)) {
				t.Errorf("%s: cut at %d: message does not name the offset: %v", comp, cut, err)
			}
			// Only whole chunks before the cut frame, and never the last, were handed out.
			if len(got)%MinChunkSize != 0 || !bytes.Equal(got, data[:len(got)]) {
				t.Fatalf("%s: cut at %d: %d bytes handed out", comp, cut, len(got))
			}
		}
		// The same through a one-byte-at-a-time source.
		_, _, err := readAll(t, nil, VerifyOptions{Keyring: kr})
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("empty stream: %v", err)
		}
		rd, err := NewReader(iotest.OneByteReader(bytes.NewReader(img[:len(img)-1])), VerifyOptions{Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(rd); !errors.Is(err, ErrTruncated) {
			t.Errorf("one-byte reader, last byte missing: %v", err)
		}
	}
}

func TestRejectTrailing(t *testing.T) {
	for _, comp := range compressions {
		img, data, kr := smallImage(t, comp)
		for _, extra := range [][]byte{{0}, []byte("garbage"), bytes.Repeat([]byte{1}, 5000)} {
			got, _, err := readAll(t, append(bytes.Clone(img), extra...), VerifyOptions{Keyring: kr})
			if !errors.Is(err, ErrTrailingData) || !strings.Contains(err.Error(), fmt.Sprintf("image offset %d", len(img))) {
				t.Errorf("%s + %d bytes: %v", comp, len(extra), err)
			}
			// The last chunk is withheld.
			if len(got) != 3*MinChunkSize || !bytes.Equal(got, data[:len(got)]) {
				t.Errorf("%s: %d bytes handed out before the trailing data error", comp, len(got))
			}
		}
	}
	// An empty payload with trailing bytes.
	key := testKeys.get(t, Ed25519)
	img, _ := sign(t, key, nil, baseOpts())
	if _, err := Verify(bytes.NewReader(append(img, 0)), VerifyOptions{Keyring: keyringFor(t, key)}); !errors.Is(err, ErrTrailingData) {
		t.Errorf("empty payload + 1 byte: %v", err)
	}
}

func TestRejectPayloadHash(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	kr := keyringFor(t, key)
	data := payload(2*MinChunkSize+1, 24)
	img, _ := sign(t, key, data, baseOpts())
	img[72] ^= 1 // payload SHA-256
	resign(t, key, img)
	got, _, err := readAll(t, img, VerifyOptions{Keyring: kr})
	if !errors.Is(err, ErrPayloadHash) || len(got) != 2*MinChunkSize {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	// A resumed reader cannot check the whole-payload hash; the chunks still verify.
	rd, err := NewReaderAt(bytes.NewReader(img), 1, VerifyOptions{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(rd); err != nil || !bytes.Equal(got, data[MinChunkSize:]) {
		t.Fatalf("resumed: %v", err)
	}
}

type failingWriterAt struct {
	after int64
	err   error
}

func (f *failingWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.after {
		return 0, f.err
	}
	return len(p), nil
}

func TestSignErrors(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	data := payload(10*MinChunkSize, 25)
	sign := func(out io.WriterAt, r io.Reader, size int64, opts SignOptions) error {
		if out == nil {
			out = &imagetest.Buffer{}
		}
		_, _, err := Sign(out, r, size, key, opts)
		return err
	}
	for _, comp := range compressions {
		opts := compressedOpts(comp)
		if err := sign(nil, bytes.NewReader(data[:len(data)-1]), int64(len(data)), opts); !errors.Is(err, ErrPayloadSize) {
			t.Errorf("%s: short payload: %v", comp, err)
		}
		if err := sign(nil, bytes.NewReader(data), int64(len(data)-1), opts); !errors.Is(err, ErrPayloadSize) {
			t.Errorf("%s: long payload: %v", comp, err)
		}
		ioErr := errors.New("disk on fire")
		if err := sign(nil, io.MultiReader(bytes.NewReader(data[:5000]), iotest.ErrReader(ioErr)), int64(len(data)), opts); !errors.Is(err, ioErr) {
			t.Errorf("%s: payload read error: %v", comp, err)
		}
		for _, after := range []int64{0, 2000, 3 * MinChunkSize} {
			w := &failingWriterAt{after: after, err: errors.New("ENOSPC")}
			if err := sign(w, bytes.NewReader(data), int64(len(data)), opts); !errors.Is(err, w.err) {
				t.Errorf("%s: write error after %d bytes: %v", comp, after, err)
			}
		}
	}
	bad := []struct {
		name string
		mut  func(o *SignOptions)
	}{
		{"no version", func(o *SignOptions) { o.Version = "" }},
		{"long version", func(o *SignOptions) { o.Version = strings.Repeat("v", 256) }},
		{"control char", func(o *SignOptions) { o.Version = "1.0\x1b[31m" }},
		{"chunk size", func(o *SignOptions) { o.ChunkSize = 5000 }},
		{"negative chunk size", func(o *SignOptions) { o.ChunkSize = -4096 }},
		{"huge chunk size", func(o *SignOptions) { o.ChunkSize = 2 * MaxChunkSize }},
		{"compression", func(o *SignOptions) { o.Compression = 7 }},
		{"empty key", func(o *SignOptions) { o.Meta = map[string]string{"": "x"} }},
		{"long slot class", func(o *SignOptions) { o.SlotClass = strings.Repeat("s", 256) }},
		{"value not UTF-8", func(o *SignOptions) { o.Compatibility = map[string]string{"k": "\xff"} }},
		{"long value", func(o *SignOptions) { o.Meta = map[string]string{"k": strings.Repeat("v", 65536)} }},
	}
	for _, b := range bad {
		opts := baseOpts()
		b.mut(&opts)
		if err := sign(nil, bytes.NewReader(data), int64(len(data)), opts); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v", b.name, err)
		}
	}
	if err := sign(nil, bytes.NewReader(nil), -1, baseOpts()); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("negative size: %v", err)
	}
	// A payload too large for the header, refused before reading anything.
	src := &countingReader{r: bytes.NewReader(data)}
	if err := sign(nil, src, 1<<40, baseOpts()); !errors.Is(err, ErrHeaderTooLarge) || src.n != 0 {
		t.Errorf("1 TiB in 4 KiB chunks: %v (read %d bytes)", err, src.n)
	}
	if _, _, err := Sign(&imagetest.Buffer{}, bytes.NewReader(data), 10, nil, baseOpts()); !errors.Is(err, ErrBadKey) {
		t.Errorf("nil key: %v", err)
	}
}

func TestSignErrorsLeaveNoGoroutines(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	data := payload(40*MinChunkSize, 26)
	before := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		opts := baseOpts()
		opts.Compression = compressions[i%2]
		opts.Concurrency = 1 + i%4
		w := &failingWriterAt{after: int64(i) * 3000, err: errors.New("ENOSPC")}
		if _, _, err := Sign(w, bytes.NewReader(data), int64(len(data)), key, opts); err == nil {
			t.Fatal("no error")
		}
		if _, _, err := Sign(&imagetest.Buffer{}, bytes.NewReader(data[:i*5000]), int64(len(data)), key, opts); !errors.Is(err, ErrPayloadSize) {
			t.Fatal(err)
		}
	}
	// Sign waits for its goroutines before returning, so none are left (allow a little slack
	// for goroutines the runtime or the test framework may start).
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("%d goroutines before, %d after", before, after)
	}
}

func TestPayloadHashOfEmpty(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	img, h := sign(t, key, nil, baseOpts())
	if h.PayloadSHA256 != sha256.Sum256(nil) || len(h.Chunks) != 0 || h.ImageSize != h.Size || int64(len(img)) != h.Size {
		t.Fatalf("%+v", h)
	}
}
