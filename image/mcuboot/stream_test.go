package mcuboot

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/image/mcuboot/mcuboottest"
)

// keyring returns a keyring trusting keys.
func keyring(t testing.TB, keys ...crypto.Signer) *image.Keyring {
	t.Helper()
	kr, err := image.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if _, err := kr.Add(fmt.Sprintf("k%d", i), k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	return kr
}

// smallReads hands out at most n bytes per Read.
type smallReads struct {
	r io.Reader
	n int
}

func (s smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }

// stream reads data through a Reader in reads of n bytes and returns what it handed out.
func stream(data []byte, kr *image.Keyring, check func(*Image) error, n int) ([]byte, *Reader, error) {
	rd, err := NewReader(smallReads{bytes.NewReader(data), n}, int64(len(data)), kr, check)
	if err != nil {
		return nil, nil, err
	}
	var out []byte
	buf := make([]byte, n)
	for {
		k, err := rd.Read(buf)
		out = append(out, buf[:k]...)
		if err == io.EOF {
			return out, rd, nil
		}
		if err != nil {
			return out, rd, err
		}
	}
}

// verdict names the sentinel an error of Parse or Verify wraps ("" for nil).
func verdict(err error) string {
	for _, e := range []error{ErrBadMagic, ErrTruncated, ErrMalformed, ErrTooLarge, ErrHashMismatch, ErrKeyMismatch, ErrBadSignature, image.ErrUnknownKey} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err != nil {
		return "unclassified: " + err.Error()
	}
	return ""
}

// The streaming check reaches VerifyTrusted's verdict on every kind of image Sign makes (each
// key type, pure signatures, protected TLVs, padding and trailers) for keyrings with the
// signing key, with other keys and with none, however the reads fall; what it hands out of a
// good image is the image, and reading it back checks.
func TestStreamMatchesVerifyTrusted(t *testing.T) {
	rings := map[string]*image.Keyring{
		"golden":    keyring(t, goldenKey()),
		"all":       keyring(t, otherEd25519Key(), testKey(t, image.ECDSAP256), testKey(t, image.ECDSAP384), testKey(t, image.RSA2048), goldenKey()),
		"ecdsa-256": keyring(t, testKey(t, image.ECDSAP256)),
		"other":     keyring(t, otherEd25519Key()),
		"none":      keyring(t),
	}
	for name, data := range fuzzSeeds(t) {
		for rname, kr := range rings {
			_, want := VerifyTrusted(data, kr)
			for _, n := range []int{1, 7, 4096} {
				out, rd, err := stream(data, kr, nil, n)
				if verdict(err) != verdict(want) {
					t.Errorf("%s, keyring %s, reads of %d: stream says %v, VerifyTrusted %v", name, rname, n, err, want)
					continue
				}
				if err != nil {
					continue
				}
				if !bytes.Equal(out, data) {
					t.Errorf("%s, keyring %s: handed out %d bytes that differ from the image's %d", name, rname, len(out), len(data))
				}
				if err := rd.VerifyAt(bytes.NewReader(data)); err != nil {
					t.Errorf("%s, keyring %s: read back: %v", name, rname, err)
				}
			}
		}
	}
}

// An image that does not verify (a changed body byte, a changed signature, a key nobody
// trusts, a refusal of the caller's check) is refused at the end of the stream, and nothing
// of its TLV areas is handed out: a slot written from the stream never holds it whole.
func TestStreamWithholdsTheTLVs(t *testing.T) {
	data, err := Sign(mcuboottest.Payload(20_000), testKey(t, image.ECDSAP256), SignOptions{Version: v1234, HeaderSize: 0x200, PadHeader: true, SecurityCounter: u32(3)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	sig := img.Find(TLVECDSASig)
	kr := keyring(t, testKey(t, image.ECDSAP256))
	low := errors.New("security counter below the floor")
	for _, tc := range []struct {
		name  string
		data  []byte
		kr    *image.Keyring
		check func(*Image) error
		want  error
	}{
		{"body byte", flip(data, 0x300), kr, nil, ErrHashMismatch},
		{"signature byte", flip(data, sig.Offset+8), kr, nil, ErrBadSignature},
		{"untrusted key", data, keyring(t, testKey(t, image.ECDSAP384)), nil, ErrKeyMismatch},
		{"refused by the check", data, kr, func(i *Image) error {
			if sc, _ := i.SecurityCounter(); sc < 4 {
				return low
			}
			return nil
		}, low},
	} {
		out, _, err := stream(tc.data, tc.kr, tc.check, 4096)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if len(out) > img.HashedSize()-int(img.Header.ProtectedTLVSize) {
			t.Errorf("%s: %d bytes handed out; the TLV areas start at %d", tc.name, len(out), img.Header.bodyEnd())
		}
	}
	if _, _, err := stream(data, kr, nil, 4096); err != nil {
		t.Fatalf("the good image: %v", err)
	}
}

// Reading back finds a byte that differs from what streamed, in the signed region and in
// the TLV areas or padding after it.
func TestStreamVerifyAt(t *testing.T) {
	data, err := Sign(mcuboottest.Payload(5000), goldenKey(), SignOptions{Version: v1234, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x2000, Pad: true})
	if err != nil {
		t.Fatal(err)
	}
	_, rd, err := stream(data, keyring(t, goldenKey()), nil, 512)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{0x40, len(data) - 1} {
		if err := rd.VerifyAt(bytes.NewReader(flip(data, off))); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("byte %#x changed in the slot: %v", off, err)
		}
	}
}

// An image checked with ECDSA or RSA keys streams in the reader's own small buffers: a 4 MiB
// image costs well under 1 MiB of allocations (Verify would hold all of it).
func TestStreamMemory(t *testing.T) {
	data, err := Sign(mcuboottest.Payload(4<<20), testKey(t, image.ECDSAP256), SignOptions{Version: v1234, HeaderSize: 0x200, PadHeader: true})
	if err != nil {
		t.Fatal(err)
	}
	kr := keyring(t, testKey(t, image.ECDSAP256), testKey(t, image.RSA2048))
	buf := make([]byte, 64<<10)
	got := imagetest.AllocatedDuring(func() {
		var rd io.Reader
		if rd, err = NewReader(bytes.NewReader(data), int64(len(data)), kr, nil); err != nil {
			return
		}
		for err == nil {
			_, err = rd.Read(buf)
		}
	})
	if err != io.EOF {
		t.Fatal(err)
	}
	if got > 1<<20 {
		t.Errorf("streaming a %d-byte image allocated %d bytes", len(data), got)
	}
}

// FuzzStream feeds arbitrary bytes to the streaming check and to VerifyTrusted: both reach
// the same verdict, and a Reader that accepts hands out exactly the input. The seed corpus
// (testdata/fuzz/FuzzStream) holds the same real images as FuzzParse's.
func FuzzStream(f *testing.F) {
	kr := keyring(f, goldenKey())
	f.Fuzz(func(t *testing.T, data []byte) {
		_, want := VerifyTrusted(data, kr)
		out, _, err := stream(data, kr, nil, 97)
		if verdict(err) != verdict(want) {
			t.Fatalf("stream says %v, VerifyTrusted %v", err, want)
		}
		if err == nil && !bytes.Equal(out, data) {
			t.Fatal("an accepted image streamed out changed")
		}
	})
}

// The committed seed corpus of FuzzStream exists.
func TestFuzzStreamSeedCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzStream", "*"))
	if err != nil || len(files) < 8 {
		t.Fatalf("seed corpus has %d files (%v)", len(files), err)
	}
	if _, err := os.Stat(filepath.Join("testdata", "fuzz", "FuzzStream", "ed25519-pure")); err != nil {
		t.Fatal(err)
	}
}
