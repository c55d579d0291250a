package image

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
)

// addPieces feeds raw to c in pieces of growing size (1, 2, 3, ... bytes), as the assembly
// puts a chunk together from ranges and reused bytes.
func addPieces(c *ChunkCheck, raw []byte) {
	for n := 1; len(raw) > 0; n++ {
		k := min(n*n, len(raw))
		c.Add(raw[:k])
		raw = raw[k:]
	}
}

func TestChunkCheck(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	data := payload(3*MinChunkSize+5, 9)
	_, h := sign(t, key, data, baseOpts())
	whole := sha256.New()
	for i := range h.Chunks {
		lo := i * MinChunkSize
		hi := min(lo+MinChunkSize, len(data))
		c := h.NewChunkCheck(i, whole)
		addPieces(c, data[lo:hi])
		if err := c.Done(); err != nil {
			t.Errorf("chunk %d: %v", i, err)
		}
		if err := c.Done(); err != nil {
			t.Errorf("chunk %d, Done again: %v", i, err)
		}
	}
	if got := whole.Sum(nil); !bytes.Equal(got, h.PayloadSHA256[:]) {
		t.Errorf("the payload's hash over the checked pieces is %x, want %x", got, h.PayloadSHA256)
	}

	for i := range h.Chunks {
		lo := i * MinChunkSize
		hi := min(lo+MinChunkSize, len(data))
		bad := bytes.Clone(data[lo:hi])
		bad[len(bad)/2] ^= 0x01
		w := sha256.New()
		c := h.NewChunkCheck(i, w)
		addPieces(c, bad)
		err := c.Done()
		var ce *ChunkError
		if !errors.Is(err, ErrChunkHash) || !errors.As(err, &ce) || ce.Index != i || ce.Offset != int64(lo) {
			t.Errorf("chunk %d corrupted: %v", i, err)
		}
		if again := c.Done(); again != err {
			t.Errorf("chunk %d corrupted, Done again: %v, want the first result %v", i, again, err)
		}
		if got := w.Sum(nil); !bytes.Equal(got, hashOf(bad)) {
			t.Errorf("chunk %d corrupted: whole took %x, want the hash of every byte given (%x)", i, got, hashOf(bad))
		}

		c = h.NewChunkCheck(i, nil)
		addPieces(c, data[lo:hi-1])
		if err := c.Done(); !errors.Is(err, ErrChunkHash) {
			t.Errorf("chunk %d short: %v", i, err)
		}
		c = h.NewChunkCheck(i, nil)
		addPieces(c, append(bytes.Clone(data[lo:hi]), 0))
		if err := c.Done(); !errors.Is(err, ErrChunkHash) {
			t.Errorf("chunk %d long: %v", i, err)
		}
	}
	c := h.NewChunkCheck(len(h.Chunks), nil)
	if err := c.Done(); err == nil || errors.Is(err, ErrChunkHash) {
		t.Errorf("chunk index out of range: %v", err)
	}
}

// A ChunkCheck checks against the header as verified, not against Chunks as a caller
// changed them afterwards.
func TestChunkCheckIgnoresCallerMutation(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	kr := keyringFor(t, key)
	data := payload(2*MinChunkSize, 10)
	img, _ := sign(t, key, data, baseOpts())
	h, err := ReadHeader(bytes.NewReader(img), VerifyOptions{Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	evil := bytes.Clone(data[:MinChunkSize])
	evil[7] ^= 1
	h.Chunks[0].SHA256 = sha256.Sum256(evil)
	c := h.NewChunkCheck(0, nil)
	addPieces(c, evil)
	if err := c.Done(); !errors.Is(err, ErrChunkHash) {
		t.Errorf("ChunkCheck after mutating Chunks: %v", err)
	}
}

func hashOf(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
