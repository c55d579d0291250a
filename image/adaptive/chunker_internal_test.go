package adaptive

import (
	"bytes"
	"math/bits"
	"testing"
)

// cutByLoop is Cut as the format defines it (docs/adaptive.md, Chunker): every byte rolled
// in, the harder mask before Avg, the easier one after.
func (p Params) cutByLoop(b []byte) int {
	n := min(len(b), p.Max)
	if n <= p.Min {
		return n
	}
	hard, easy := p.masks()
	var h uint64
	for i := p.Min; i < n; i++ {
		h = h<<1 + gear[b[i]]
		mask := easy
		if i < min(p.Avg, n) {
			mask = hard
		}
		if h&mask == 0 {
			return i + 1
		}
	}
	return n
}

// Cut of one byte value repeated (worked out from the rolling hash's fixed point) cuts where
// the byte-by-byte loop does, for every byte value, around Min, Avg and Max, and for sizes
// whose fixed point cuts (under either mask) and whose does not.
func TestCutUniformAsLoop(t *testing.T) {
	// Small averages make masks of few bits, which fixed points meet; Avg = Min+64 puts the
	// fixed point of an odd gear value at Avg itself (an even one's comes sooner).
	params := []Params{DefaultParams, {Min: 64, Avg: 256, Max: 1024}, {Min: 64, Avg: 64, Max: 4096}, {Min: 100, Avg: 128, Max: 160},
		{Min: 8, Avg: 16, Max: 256}, {Min: 16, Avg: 128, Max: 512},
		{Min: 0, Avg: 64, Max: 256}, {Min: 64, Avg: 128, Max: 1024}, {Min: 192, Avg: 256, Max: 1024}, {Min: 448, Avg: 512, Max: 2048}}
	cuts := map[string]int{} // how the loop ended: before the fixed point, at Avg+1 after it, at the end
	for _, p := range params {
		for v := range 256 {
			for _, n := range []int{1, p.Min, p.Min + 1, p.Min + 63, p.Min + 64, p.Min + 65, p.Avg - 1, p.Avg, p.Avg + 1, p.Avg + 64, p.Max - 1, p.Max, p.Max + 5} {
				if n < 1 {
					continue
				}
				b := bytes.Repeat([]byte{byte(v)}, n)
				want := p.cutByLoop(b)
				if got := p.Cut(b); got != want {
					t.Fatalf("%+v: %d bytes of %#x: Cut %d, the loop %d", p, n, v, got, want)
				}
				fixed := p.Min + 64 - bits.TrailingZeros64(gear[v]) // the first byte the fixed point rolls in again
				switch {
				case want < min(n, p.Max) && want == p.Avg+1 && fixed == p.Avg:
					cuts["at Avg, the fixed point there"]++
				case want < min(n, p.Max) && want == p.Avg+1 && fixed < p.Avg:
					cuts["at Avg, after the fixed point"]++
				case want < min(n, p.Max):
					cuts["early"]++
				default:
					cuts["none"]++
				}
			}
		}
	}
	if len(cuts) < 4 || cuts["at Avg, the fixed point there"] == 0 {
		t.Fatalf("the cases end only as %v: the test does not reach every way out", cuts)
	}
	t.Log(cuts)
}
