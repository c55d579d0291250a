package image

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aduflash/aduflash/image/imagetest"
)

// keyCache generates each key type at most once per test binary (RSA key generation is slow).
type keyCache struct {
	mu   sync.Mutex
	keys map[KeyType]crypto.Signer
}

func (c *keyCache) get(t testing.TB, kt KeyType) crypto.Signer {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[kt]; ok {
		return k
	}
	k, err := GenerateKey(kt, nil)
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", kt, err)
	}
	if c.keys == nil {
		c.keys = map[KeyType]crypto.Signer{}
	}
	c.keys[kt] = k
	return k
}

// testKeys is the test binary's key cache; tests pass it to helpers explicitly.
var testKeys = &keyCache{}

// fuzzKey is a fixed ed25519 key, so the committed fuzz corpus stays valid.
func fuzzKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte("aduimg-fuzz-key!"), 2))
}

func keyringFor(t testing.TB, keys ...crypto.Signer) *Keyring {
	t.Helper()
	kr, err := NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := kr.Add("test", k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	return kr
}

// discardAt counts what is written and keeps only the header (the first keep bytes).
type discardAt struct {
	keep []byte
	end  int64
}

func (d *discardAt) WriteAt(p []byte, off int64) (int, error) {
	if off < int64(len(d.keep)) {
		copy(d.keep[off:], p)
	}
	d.end = max(d.end, off+int64(len(p)))
	return len(p), nil
}

var testCreated = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func baseOpts() SignOptions {
	return SignOptions{
		Version:         "1.2.3",
		SlotClass:       "rootfs",
		Compatibility:   map[string]string{"manufacturer": "contoso", "model": "toaster"},
		Meta:            map[string]string{"build": "ci-42", "notes": "line 1\nline 2 – ünïcode"},
		SecurityCounter: 7,
		ChunkSize:       MinChunkSize,
		Created:         testCreated,
	}
}

// compressedOpts are baseOpts with compression comp.
func compressedOpts(comp Compression) SignOptions {
	opts := baseOpts()
	opts.Compression = comp
	return opts
}

// benchOpts are the options of the benchmarks: compression comp, chunks of the default size.
func benchOpts(comp Compression) SignOptions {
	opts := compressedOpts(comp)
	opts.ChunkSize = DefaultChunkSize
	return opts
}

// payload returns n deterministic bytes that are partly compressible: runs of text
// alternate with random bytes.
func payload(n int, seed uint64) []byte {
	b := make([]byte, n)
	fillPayload(b, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), 0)
	return b
}

func fillPayload(b []byte, rng *rand.Rand, pos int64) {
	const text = "the quick brown fox jumps over the lazy dog; firmware 1.2.3 build 42\n"
	for i := range b {
		p := pos + int64(i)
		if (p/3000)%3 == 2 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = text[p%int64(len(text))]
		}
	}
}

// genReader streams n deterministic, partly compressible payload bytes without keeping them:
// a 1 MiB pattern repeated, with the offset stamped into every 4 KiB so no two blocks are equal.
type genReader struct {
	n, pos  int64
	pattern []byte
}

func newGenReader(n int64) *genReader {
	return &genReader{n: n, pattern: payload(1<<20, 1)}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.pos >= g.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.n-g.pos)]
	for i := 0; i < len(p); {
		at := g.pos + int64(i)
		blk := at &^ 4095
		j := copy(p[i:], g.pattern[at%int64(len(g.pattern)):min(int64(len(g.pattern)), at%int64(len(g.pattern))+blk+4096-at)])
		for k := 0; k < 8; k++ { // stamp the block's offset into its first 8 bytes
			if o := blk + int64(k) - at; o >= 0 && o < int64(j) {
				p[i+int(o)] = byte(blk >> (8 * k))
			}
		}
		i += j
	}
	g.pos += int64(len(p))
	return len(p), nil
}

// sign makes an image in memory.
func sign(t testing.TB, key crypto.Signer, data []byte, opts SignOptions) ([]byte, *Header) {
	t.Helper()
	var f imagetest.Buffer
	h, n, err := Sign(&f, bytes.NewReader(data), int64(len(data)), key, opts)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if n != int64(len(f.Bytes())) || n != h.ImageSize {
		t.Fatalf("Sign returned size %d, header says %d, wrote %d", n, h.ImageSize, len(f.Bytes()))
	}
	return f.Bytes(), h
}

// resign replaces the signature of img's header (after a test changed signed bytes).
func resign(t testing.TB, key crypto.Signer, img []byte) {
	t.Helper()
	hs := int(get32(img[12:]))
	signed := img[:hs-sigBlockSize]
	sig, err := SignMessage(key, signed)
	if err != nil {
		t.Fatal(err)
	}
	blk := img[hs-sigBlockSize : hs]
	clear(blk)
	le16(blk, uint16(len(sig)))
	copy(blk[4:], sig)
}

// craft builds a signed image from explicit frames, for inputs Sign never makes. mutate may
// change the header before it is encoded.
func craft(t testing.TB, key crypto.Signer, opts SignOptions, raw []byte, frames [][]byte, comps []Compression, mutate func(h *Header, meta *[]byte)) []byte {
	t.Helper()
	kt, _ := TypeOf(key.Public())
	id, _ := KeyIDOf(key.Public())
	meta, err := encodeMetadata(opts.Version, opts.SlotClass, opts.Compatibility, opts.Meta)
	if err != nil {
		t.Fatal(err)
	}
	h := &Header{KeyID: id, KeyType: kt, Version: opts.Version, SecurityCounter: opts.SecurityCounter,
		Created: opts.Created, Compression: opts.Compression, ChunkSize: opts.ChunkSize, RawSize: int64(len(raw)),
		PayloadSHA256: sha256.Sum256(raw)}
	hs := int64(headerSize(len(meta), uint64(len(frames))))
	off := hs
	for i, f := range frames {
		lo := i * opts.ChunkSize
		hi := min(lo+opts.ChunkSize, len(raw))
		h.Chunks = append(h.Chunks, Chunk{SHA256: sha256.Sum256(raw[lo:hi]), Offset: off, Length: len(f), Compression: comps[i]})
		off += int64(len(f))
	}
	if mutate != nil {
		mutate(h, &meta)
	}
	signed, err := marshalSigned(h, meta)
	if err != nil {
		t.Fatal(err)
	}
	// marshalSigned computes the header size from what it encodes; keep it as given.
	sig, err := SignMessage(key, signed)
	if err != nil {
		t.Fatal(err)
	}
	img := appendSigBlock(signed, sig)
	for _, f := range frames {
		img = append(img, f...)
	}
	return img
}

func readAll(t testing.TB, img []byte, opts VerifyOptions) ([]byte, *Header, error) {
	t.Helper()
	rd, err := NewReader(bytes.NewReader(img), opts)
	if err != nil {
		return nil, nil, err
	}
	got, err := io.ReadAll(rd)
	return got, rd.Header(), err
}

// isAny reports whether err matches one of targets.
func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
