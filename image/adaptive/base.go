package adaptive

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// baseRun is the most HoldsBase reads at once: places one after the other, read together.
const baseRun = 1 << 20

// basePlace is a chunk of the base map and where it lies.
type basePlace struct {
	named
	off int64
}

// HoldsBase tells whether r (size bytes, source in found's numbering) holds every chunk of the
// base map where the map puts it: each chunk read there and its Weak compared. When it does,
// it records those places in found (where found has none yet) and the caller need not cut r:
// the map is what that cut (and Index.Extend) finds when r holds the base payload. It reads
// the places in offset order, neighbours together (up to 1 MiB), on up to parts goroutines
// at once, and stops at the first that does not match. An index without a base map, or an r
// shorter than the base, holds nothing of it (false).
func (x *Index) HoldsBase(r io.ReaderAt, size int64, source, parts int, found map[Sum]Location) (bool, error) {
	m := x.Base
	if m == nil || size < m.Size {
		return false, nil
	}
	var ps []basePlace
	for _, c := range x.distinct() {
		if off, ok := m.At[c.sum]; ok {
			ps = append(ps, basePlace{c, off})
		}
	}
	slices.SortFunc(ps, func(a, b basePlace) int { return cmp.Compare(a.off, b.off) })
	// runs: places that follow each other, up to baseRun bytes or one chunk together.
	var runs [][]basePlace
	for i := 0; i < len(ps); {
		j, end := i+1, ps[i].off+int64(ps[i].size)
		for j < len(ps) && ps[j].off == end && end+int64(ps[j].size)-ps[i].off <= baseRun {
			end += int64(ps[j].size)
			j++
		}
		runs = append(runs, ps[i:j])
		i = j
	}
	var next atomic.Int64
	var differs atomic.Bool
	errs := make([]error, max(parts, 1))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			buf := make([]byte, max(baseRun, x.Params.Max))
			for !differs.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(runs) {
					return
				}
				run := runs[i]
				last := run[len(run)-1]
				b := buf[:last.off+int64(last.size)-run[0].off]
				if k, err := r.ReadAt(b, run[0].off); k < len(b) {
					errs[w] = fmt.Errorf("adaptive: reading %d bytes at %d: %w", len(b), run[0].off, shortRead(err))
					differs.Store(true)
					return
				}
				for _, p := range run {
					at := p.off - run[0].off
					if WeakOf(b[at:at+int64(p.size)]) != p.weak {
						differs.Store(true)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return false, err
		}
	}
	if differs.Load() {
		return false, nil
	}
	for _, p := range ps {
		if _, ok := found[p.sum]; !ok {
			found[p.sum] = Location{Source: source, Offset: p.off}
		}
	}
	return true, nil
}
