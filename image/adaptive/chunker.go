package adaptive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
)

// Params are the content-defined chunker's sizes: no cut before Min bytes, cuts about every
// Avg bytes (a power of two), a forced cut at Max. The index carries them, so that a device
// cuts what it holds at the same places.
type Params struct {
	Min, Avg, Max int
}

// DefaultParams: 8, 32 and 128 KiB (docs/adaptive.md has the measurements behind them: with
// delta frames, fewer and larger chunks fetch less, the index being smaller).
var DefaultParams = Params{Min: 8 << 10, Avg: 32 << 10, Max: 128 << 10}

// Limits of Params.
const (
	MinChunk = 64
	MaxChunk = 1 << 20
)

// Check refuses sizes a chunker cannot use.
func (p Params) Check() error {
	switch {
	case p.Min < MinChunk || p.Max > MaxChunk:
		return fmt.Errorf("%w: chunk sizes %d…%d outside %d…%d", ErrMalformed, p.Min, p.Max, MinChunk, MaxChunk)
	case p.Avg&(p.Avg-1) != 0 || p.Avg < p.Min || p.Avg > p.Max:
		return fmt.Errorf("%w: average chunk size %d is not a power of two in [%d, %d]", ErrMalformed, p.Avg, p.Min, p.Max)
	}
	return nil
}

// gear is the rolling hash's table: the first 8 bytes of SHA-256("aduflash gear" ‖ i) for
// every byte value i (docs/adaptive.md).
var gear = func() (t [256]uint64) {
	for i := range t {
		s := sha256.Sum256([]byte{'a', 'd', 'u', 'f', 'l', 'a', 's', 'h', ' ', 'g', 'e', 'a', 'r', byte(i)})
		t[i] = binary.LittleEndian.Uint64(s[:8])
	}
	return t
}()

// masks are FastCDC's normalized masks: one bit harder than Avg before it, one bit easier
// after; the hash's top bits are compared, as they depend on the most bytes.
func (p Params) masks() (hard, easy uint64) {
	b := bits.TrailingZeros(uint(p.Avg))
	return ^uint64(0) << (64 - b - 1), ^uint64(0) << (64 - b + 1)
}

// Cut returns the length of the chunk at the start of b: b holds the rest of the data, or at
// least Max bytes of it.
func (p Params) Cut(b []byte) int {
	n := min(len(b), p.Max)
	if n <= p.Min {
		return n
	}
	hard, easy := p.masks()
	var h uint64
	normal := min(p.Avg, n)
	if bytes.Equal(b[1:n], b[:n-1]) {
		return p.cutUniform(b[0], n, normal)
	}
	for i, c := range b[p.Min:normal] {
		h = h<<1 + gear[c]
		if h&hard == 0 {
			return p.Min + i + 1
		}
	}
	for i, c := range b[normal:n] {
		h = h<<1 + gear[c]
		if h&easy == 0 {
			return normal + i + 1
		}
	}
	return n
}

// cutUniform is Cut of n bytes of value c (free space: zeros, erased flash), worked out: the
// rolling hash of a byte repeated reaches a fixed point, -gear[c], within 64 bytes; from
// there on nothing changes but the mask at Avg, so the cut is found without rolling on.
func (p Params) cutUniform(c byte, n, normal int) int {
	hard, easy := p.masks()
	var h uint64
	for i := p.Min; i < n; i++ {
		next := h<<1 + gear[c]
		if next == h { // at the fixed point since byte i-1, which did not cut
			if i <= normal && normal < n && h&easy == 0 {
				return normal + 1 // the first byte under the easier mask cuts
			}
			return n
		}
		h = next
		mask := easy
		if i < normal {
			mask = hard
		}
		if h&mask == 0 {
			return i + 1
		}
	}
	return n
}

// Split cuts r into chunks and calls fn with each one's offset and bytes (valid during the
// call only), until r ends or fn fails.
func (p Params) Split(r io.Reader, fn func(off int64, chunk []byte) error) error {
	buf := make([]byte, max(4*p.Max, 1<<20))
	var off int64
	have, eof := 0, false
	for {
		for !eof && have < len(buf) {
			n, err := r.Read(buf[have:])
			have += n
			if errors.Is(err, io.EOF) {
				eof = true
			} else if err != nil {
				return err
			}
		}
		if have == 0 {
			return nil
		}
		start := 0
		for have-start >= p.Max || (eof && start < have) {
			n := p.Cut(buf[start:have])
			if err := fn(off, buf[start:start+n]); err != nil {
				return err
			}
			off += int64(n)
			start += n
		}
		have = copy(buf, buf[start:have])
	}
}

// uniformWeaks hashes chunks, those of one byte value repeated (free space: zeros, erased
// flash) once per value and size: it keeps their Weaks by value and size.
type uniformWeaks map[[2]int]Weak

func (u uniformWeaks) of(chunk []byte) Weak {
	if len(chunk) == 0 || !bytes.Equal(chunk[1:], chunk[:len(chunk)-1]) {
		return WeakOf(chunk)
	}
	k := [2]int{int(chunk[0]), len(chunk)}
	w, ok := u[k]
	if !ok {
		w = WeakOf(chunk)
		u[k] = w
	}
	return w
}

// Location is where a chunk lies on the device: in which source, at which offset.
type Location struct {
	Source int
	Offset int64
}

// Scan cuts bytes [from, from+n) of r with p and records in found, for every chunk whose Key
// wanted names, under the Sum wanted gives it, where the first such chunk lies (source is the
// caller's number for r). A chunk found so is not hashed with SHA-256: its Weak and size
// match, which the caller proves (docs/adaptive.md). It cuts parts of the range on up to
// parts goroutines at once, each part from its start (a chunk across the start of a part may
// be missed); what it records is what one pass would, but for those. A chunk of one byte
// value repeated (free space: zeros, erased flash) is hashed once per value and size.
func (p Params) Scan(r io.ReaderAt, source int, from, n int64, parts int, wanted map[Key]Sum, found map[Sum]Location) error {
	sizes := make([]bool, p.Max+1) // a chunk of a size nothing wanted has is not hashed
	for k := range wanted {
		if k.Size <= p.Max {
			sizes[k.Size] = true
		}
	}
	step := max(n/int64(max(parts, 1)), int64(p.Max)*16)
	var starts []int64
	for off := from; off < from+n; off += step {
		starts = append(starts, off)
	}
	maps := make([]map[Sum]Location, len(starts))
	errs := make([]error, len(starts))
	var wg sync.WaitGroup
	for i, off := range starts {
		maps[i] = map[Sum]Location{}
		weaks := uniformWeaks{}
		wg.Go(func() {
			end := min(off+step, from+n)
			if i == len(starts)-1 {
				end = from + n
			}
			errs[i] = p.Split(io.NewSectionReader(r, off, end-off), func(at int64, chunk []byte) error {
				if !sizes[len(chunk)] {
					return nil
				}
				if s, ok := wanted[Key{weaks.of(chunk), len(chunk)}]; ok {
					if _, seen := maps[i][s]; !seen {
						maps[i][s] = Location{Source: source, Offset: off + at}
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, m := range maps {
		if errs[i] != nil {
			return errs[i]
		}
		for s, loc := range m {
			if _, seen := found[s]; !seen {
				found[s] = loc
			}
		}
	}
	return nil
}
