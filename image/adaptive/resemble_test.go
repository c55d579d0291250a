package adaptive

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The base chunk most like a chunk is its old version, even when an earlier chunk shares a
// longer run of common bytes (a file header, say) with it: an anchor counts for every chunk
// that holds it.
func TestResemblancePicksOldVersion(t *testing.T) {
	r := rand.NewChaCha8([32]byte{9})
	bytesOf := func(n int) []byte { b := make([]byte, n); r.Read(b); return b }
	common, file := bytesOf(24<<10), bytesOf(8<<10)
	changed := slices.Clone(file)
	for i := 0; i < len(changed); i += 100 {
		changed[i] ^= 0x5a // most of the file's windows change
	}
	like := newResemblance()
	for i, c := range [][]byte{slices.Concat(common, bytesOf(8<<10)), bytesOf(32 << 10), slices.Concat(common, file), bytesOf(32 << 10)} {
		like.add(i, c)
	}
	like.last = 3
	if got, ok := like.best(slices.Concat(common, changed)); !ok || got != 2 {
		t.Fatalf("most like the changed file: base chunk %d (%v), want 2, its old version", got, ok)
	}
	if _, ok := like.best(bytesOf(32 << 10)); ok {
		t.Fatal("a chunk of new bytes is like a base chunk")
	}
}
