package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aduflash/aduflash/image/imagetest"
)

var updateSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// readerErrors are every error a Reader may return for a damaged image.
var readerErrors = append([]error{ErrChunkHash, ErrPayloadHash, ErrTrailingData, ErrTooLarge, ErrChunkTooLarge}, headerErrors...)

// fuzzOptions are FuzzNewReader's limits: a 1 MiB slot and 8 KiB chunks.
func fuzzOptions(kr *Keyring) VerifyOptions {
	return VerifyOptions{Keyring: kr, MaxRawSize: 1 << 20, MaxChunkSize: 2 * MinChunkSize}
}

// fuzzSeed is an input of the committed seed corpus and the error Verify gives it with
// fuzzOptions (nil: a valid image).
type fuzzSeed struct {
	data []byte
	want error
}

// fuzzSeeds are small images signed with fuzzKey, and images refused on each path a reader
// takes before it parses a header's body: from the fixed part (key, sizes) and by the signature.
func fuzzSeeds(t testing.TB) map[string]fuzzSeed {
	key := fuzzKey()
	out := map[string]fuzzSeed{}
	for _, comp := range compressions {
		for _, n := range []int{0, 1, MinChunkSize + 7, 2*MinChunkSize + 100} {
			opts := compressedOpts(comp)
			if n == 1 {
				opts.Compatibility, opts.Meta, opts.SlotClass = nil, nil, ""
			}
			img, _ := sign(t, key, payload(n, uint64(n)), opts)
			out[fmt.Sprintf("%s-%d", comp, n)] = fuzzSeed{data: img}
		}
	}
	small := out["none-1"].data
	opts := baseOpts()
	opts.ChunkSize = 4 * MinChunkSize
	bigChunks, _ := sign(t, key, payload(100, 100), opts)
	unknown := bytes.Clone(small)
	unknown[16] ^= 1
	out["refused-chunk-size"] = fuzzSeed{bigChunks, ErrChunkTooLarge}
	out["refused-unknown-key"] = fuzzSeed{unknown, ErrUnknownKey}
	out["refused-raw-size"] = fuzzSeed{imagetest.ForgedHeader(small, 257), ErrTooLarge}
	out["refused-forged"] = fuzzSeed{imagetest.ForgedHeader(small, 3), ErrBadSignature}
	return out
}

// TestFuzzSeeds writes the seed corpus with -update-fuzz-seeds, and otherwise checks that each
// committed seed still takes its path: a valid image verifies, the others are refused for their
// reason (so the fuzzers start from deep inside the format and from each early refusal).
func TestFuzzSeeds(t *testing.T) {
	seeds := fuzzSeeds(t)
	opts := fuzzOptions(keyringFor(t, fuzzKey()))
	for _, fz := range []string{"FuzzParseHeader", "FuzzNewReader"} {
		dir := filepath.Join("testdata", "fuzz", fz)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for name, seed := range seeds {
			path := filepath.Join(dir, "seed-"+name)
			if *updateSeeds {
				data := seed.data
				if fz == "FuzzParseHeader" {
					data = data[:get32(data[12:])] // the header alone
				}
				body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			data, err := readCorpusFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestFuzzSeeds -update-fuzz-seeds)", err)
			}
			if _, err := ParseHeader(bytes.NewReader(data)); err != nil {
				t.Errorf("%s/%s: %v", fz, name, err)
			}
			if fz == "FuzzNewReader" {
				_, err := Verify(bytes.NewReader(data), opts)
				if seed.want == nil && err != nil || seed.want != nil && !errors.Is(err, seed.want) {
					t.Errorf("%s/%s: %v, want %v", fz, name, err, seed.want)
				}
			}
		}
	}
}

// readCorpusFile reads a one-value "go test fuzz v1" file holding a []byte.
func readCorpusFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	const head = "go test fuzz v1\n[]byte("
	s := string(bytes.TrimSpace(b))
	if len(s) < len(head)+1 || s[:len(head)] != head || s[len(s)-1] != ')' {
		return nil, errors.New("not a go test fuzz v1 []byte file")
	}
	v, err := strconv.Unquote(s[len(head) : len(s)-1])
	return []byte(v), err
}

// FuzzParseHeader: any input parses or fails with a format error; a header that parses encodes
// back to exactly the same bytes (the encoding is canonical) and marshals to JSON.
func FuzzParseHeader(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed.data[:get32(seed.data[12:])])
	}
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(bytes.NewReader(data))
		if err != nil {
			if !isAny(err, ErrBadMagic, ErrUnsupportedVersion, ErrHeaderTooLarge, ErrMalformedHeader, ErrTruncated) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if h.Size > int64(len(data)) || h.Size > MaxHeaderSize || h.ImageSize < h.Size {
			t.Fatalf("sizes: header %d, image %d, input %d", h.Size, h.ImageSize, len(data))
		}
		meta, err := encodeMetadata(h.Version, h.SlotClass, h.Compatibility, h.Meta)
		if err != nil {
			t.Fatalf("parsed metadata does not encode: %v", err)
		}
		signed, err := marshalSigned(h, meta)
		if err != nil {
			t.Fatal(err)
		}
		if again := appendSigBlock(signed, h.Signature); !bytes.Equal(again, data[:h.Size]) {
			t.Fatalf("re-encoded header differs from the input")
		}
		if _, err := json.Marshal(h); err != nil {
			t.Fatalf("JSON: %v", err)
		}
	})
}

// FuzzNewReader feeds whole images to a Reader with a fixed keyring. Payload bytes are not
// signed directly, so mutations there reach the frame decoder and the chunk checks.
func FuzzNewReader(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed.data)
	}
	opts := fuzzOptions(keyringFor(f, fuzzKey()))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd, err := NewReader(bytes.NewReader(data), opts)
		if err != nil {
			if !isAny(err, readerErrors...) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		h := rd.Header()
		got, err := io.ReadAll(rd)
		if err != nil {
			if !isAny(err, readerErrors...) {
				t.Fatalf("unclassified error: %v", err)
			}
			if int64(len(got))%int64(h.ChunkSize) != 0 {
				t.Fatalf("%d bytes handed out before %v: not whole chunks", len(got), err)
			}
			return
		}
		if int64(len(got)) != h.RawSize || int64(len(data)) != h.ImageSize {
			t.Fatalf("read %d of %d raw bytes; input %d, image %d", len(got), h.RawSize, len(data), h.ImageSize)
		}
	})
}
