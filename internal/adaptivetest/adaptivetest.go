// Package adaptivetest holds what tests of adaptive installs share: incompressible payload
// bytes, and the most an adaptive install may fetch from a chunk store.
package adaptivetest

import (
	"bytes"
	"math/rand/v2"
	"sort"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
)

// RangeGap is the gap between two needed frames that one request may span (docs/adaptive.md:
// up to 4 KiB is fetched rather than split).
const RangeGap = 4 << 10

// Noise is n incompressible bytes.
func Noise(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// Held is the set of the hashes of the chunks x's chunker cuts data into: what a device
// holding data finds.
func Held(x *adaptive.Index, data []byte) map[adaptive.Sum]bool {
	held := map[adaptive.Sum]bool{}
	x.Params.Split(bytes.NewReader(data), func(_ int64, chunk []byte) error {
		held[adaptive.SumOf(chunk)] = true
		return nil
	})
	return held
}

// Sizes is the size of every chunk x names, its entries' and their delta frames' base
// chunks, by hash.
func Sizes(x *adaptive.Index) map[adaptive.Sum]int {
	m := map[adaptive.Sum]int{}
	for _, e := range x.Entries {
		m[e.Sum] = e.Size
		if e.Delta != nil {
			for _, bc := range e.Delta.Bases {
				m[bc.Sum] = bc.Size
			}
		}
	}
	return m
}

// StoreBound is the most an install may fetch from x's chunk store when the device holds the
// chunks held and has verified the payload up to offset verified: the frames of the chunks it
// lacks that end past verified (their delta frames where it holds their bases), each once,
// and the gaps of up to RangeGap between them that a coalesced request spans.
func StoreBound(x *adaptive.Index, held map[adaptive.Sum]bool, verified int64) int64 {
	var frames [][2]int64
	seen := map[int64]bool{}
	for _, e := range x.Entries {
		off, n := e.Frame, e.FrameN
		if d := e.Delta; d != nil && holdsAll(held, d.Bases) {
			off, n = d.Frame, d.FrameN
		}
		if e.Offset+int64(e.Size) > verified && !held[e.Sum] && !seen[off] {
			seen[off] = true
			frames = append(frames, [2]int64{off, off + int64(n)})
		}
	}
	sort.Slice(frames, func(i, j int) bool { return frames[i][0] < frames[j][0] })
	var n int64
	for i, fr := range frames {
		n += fr[1] - fr[0]
		if i > 0 {
			if gap := fr[0] - frames[i-1][1]; gap > 0 && gap <= RangeGap {
				n += gap
			}
		}
	}
	return n
}

func holdsAll(held map[adaptive.Sum]bool, bases []adaptive.BaseChunk) bool {
	for _, bc := range bases {
		if !held[bc.Sum] {
			return false
		}
	}
	return true
}

// Index verifies the aduimg image img with kr and returns its adaptive index (default
// chunker; delta frames against base, if set) and the index file's and the chunk store's
// bytes.
func Index(img []byte, kr *image.Keyring, base []byte) (x *adaptive.Index, index, store []byte, err error) {
	var b *adaptive.Base
	if base != nil {
		b = &adaptive.Base{R: bytes.NewReader(base), Size: int64(len(base))}
	}
	var st bytes.Buffer
	if x, err = adaptive.IndexImage(bytes.NewReader(img), kr, adaptive.DefaultParams, &st, b); err != nil {
		return nil, nil, nil, err
	}
	return x, x.Encode(), st.Bytes(), nil
}

// MovedLen is the length of the region Moved moves.
const MovedLen = 512 << 10

// Moved returns a copy of old (at least 2 MiB) in which the region of MovedLen bytes at
// from = len(old)/4 moved to the front, changed as a new version of a file that an ext4
// image writes elsewhere would be: a byte changed every 40 KiB, and the byte before one of
// its chunk cuts (so that two chunks of old become one); noise takes its place.
func Moved(old []byte) (moved []byte, from int) {
	from = len(old) / 4
	region := append([]byte(nil), old[from:from+MovedLen]...)
	for i := 20 << 10; i < len(region); i += 40 << 10 {
		region[i] ^= 0x5a
	}
	cut := -1
	adaptive.DefaultParams.Split(bytes.NewReader(old), func(off int64, chunk []byte) error {
		if end := int(off) + len(chunk); cut < 0 && end > from+MovedLen/4 && end < from+3*MovedLen/4 {
			cut = end - from
		}
		return nil
	})
	region[cut-1] ^= 0xa5
	moved = append(region, old[:from]...)
	moved = append(moved, Noise(1, MovedLen)...)
	return append(moved, old[from+MovedLen:]...), from
}
