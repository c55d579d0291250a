package mcuboot

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot/mcuboottest"
)

// FuzzParse feeds arbitrary bytes to Parse, Verify, WriteText and the JSON encoding: none may
// panic, every error must be one of the sentinels, and a parsed image must be consistent with
// the data. The seed corpus (testdata/fuzz/FuzzParse) holds small real images of every shape
// Sign makes; -update-golden rewrites it.
func FuzzParse(f *testing.F) {
	pub := goldenKey().Public()
	sentinels := []error{ErrBadMagic, ErrTruncated, ErrMalformed, ErrTooLarge}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Parse(data)
		if err != nil {
			if img != nil {
				t.Fatal("Parse returned an image with an error")
			}
			if !isOneOf(err, sentinels) {
				t.Fatalf("unclassified error: %v", err)
			}
			if IsImage(data) && errors.Is(err, ErrBadMagic) {
				t.Fatalf("IsImage and Parse disagree: %v", err)
			}
			return
		}
		if !IsImage(data) {
			t.Fatal("Parse accepted data IsImage rejects")
		}
		if img.HashedSize() > img.End() || img.End() > len(data) || img.Padding != len(data)-img.End() || img.Size != len(data) {
			t.Fatalf("inconsistent sizes: hashed %d, end %d, padding %d, data %d", img.HashedSize(), img.End(), img.Padding, len(data))
		}
		areas := []*TLVArea{&img.Unprotected}
		if img.Protected != nil {
			areas = append(areas, img.Protected)
		}
		for _, a := range areas {
			for _, r := range a.Records {
				if r.Offset < a.Offset+TLVInfoSize || r.Offset+TLVHeaderSize+r.Len > a.Offset+int(a.Size) || !bytes.Equal(r.Data, data[r.Offset+4:r.Offset+4+r.Len]) {
					t.Fatalf("TLV %+v outside its area %d+%d", r, a.Offset, a.Size)
				}
			}
		}
		if tr := img.Trailer; tr != nil && (tr.Offset < img.End() || !bytes.Equal(tr.Magic, data[len(data)-16:])) {
			t.Fatalf("trailer %+v overlaps the TLVs (end %d)", tr, img.End())
		}
		if err := img.WriteText(io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := json.Marshal(img); err != nil {
			t.Fatal(err)
		}
		for _, k := range []crypto.PublicKey{pub, nil} {
			v, err := Verify(data, k)
			if v == nil {
				t.Fatalf("Verify lost the parsed image: %v", err)
			}
			if err != nil && !isOneOf(err, []error{ErrMalformed, ErrHashMismatch, ErrKeyMismatch, ErrBadSignature}) {
				t.Fatalf("unclassified Verify error: %v", err)
			}
		}
	})
}

func isOneOf(err error, errs []error) bool {
	for _, e := range errs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// fuzzSeeds are small real images: each key type, protected TLVs, padding and trailers.
func fuzzSeeds(t *testing.T) map[string][]byte {
	p := mcuboottest.Payload(48)
	seeds := map[string][]byte{}
	add := func(name string, k crypto.Signer, o SignOptions) {
		b, err := Sign(p, k, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		seeds[name] = b
	}
	add("ed25519-seccnt", goldenKey(), SignOptions{Version: v1234, PadHeader: true, SecurityCounter: u32(0x01020003)})
	add("ed25519-pure", goldenKey(), SignOptions{Version: v1234, PadHeader: true, Pure: true})
	add("unsigned", nil, SignOptions{Version: v1234, PadHeader: true})
	add("ecdsa-p256-fullkey", testKey(t, image.ECDSAP256), SignOptions{Version: v1234, PadHeader: true, PublicKeyFormat: KeyFormatFull})
	add("ecdsa-p384", testKey(t, image.ECDSAP384), SignOptions{Version: v1234, PadHeader: true})
	add("rsa-2048", testKey(t, image.RSA2048), SignOptions{Version: v1234, PadHeader: true})
	add("confirm-overwrite-only", goldenKey(), SignOptions{Version: v1234, PadHeader: true, SlotSize: 0x180, OverwriteOnly: true, Confirm: true})
	add("pad-maxalign32", goldenKey(), SignOptions{Version: v1234, PadHeader: true, SlotSize: 0x200, OverwriteOnly: true, Align: 32, MaxAlign: 32, Pad: true})
	add("confirm-swap", goldenKey(), SignOptions{Version: v1234, PadHeader: true, SlotSize: 0x300, MaxSectors: 4, Align: 8, Confirm: true})
	add("protected-tlvs", goldenKey(), SignOptions{Version: v1234, PadHeader: true, SecurityCounter: u32(9),
		Dependencies: []Dependency{{1, v1234}}, BootRecord: "fw", VID: "example.com", CID: "app",
		CustomTLVs: []CustomTLV{{0xa0, []byte("x")}}, LoadAddr: 0x20000000})
	return seeds
}

// The committed seed corpus exists and is made of valid images (-update-golden rewrites it).
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if *updateGolden {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range fuzzSeeds(t) {
			if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) < 8 {
		t.Fatalf("seed corpus has %d files (%v); run go test -run TestFuzzSeedCorpus -update-golden", len(files), err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		q, ok := bytes.CutPrefix(b, []byte("go test fuzz v1\n[]byte("))
		q, ok2 := bytes.CutSuffix(q, []byte(")\n"))
		data, err := strconv.Unquote(string(q))
		if !ok || !ok2 || err != nil {
			t.Errorf("%s is not a go test corpus file of one []byte", f)
			continue
		}
		if _, err := Parse([]byte(data)); err != nil {
			t.Errorf("seed %s: %v", f, err)
		}
	}
}
