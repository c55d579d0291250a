package adaptive

import "slices"

// Resemblance: which chunk of the base shares the most content with a chunk the base lacks.
// A chunk's anchors are the gear hashes (the chunker's table) of its 64-byte windows whose
// top anchorBits bits are zero: about one window in 256, chosen by content, so that the same
// bytes give the same anchors wherever they lie. The base chunk holding the most of a chunk's
// anchors is its most similar one (docs/adaptive.md: measured against the chunk at its place).
const anchorBits = 8

// anchors returns the distinct anchors of chunk, sorted, in out's storage.
func anchors(chunk []byte, out []uint64) []uint64 {
	out = out[:0]
	mask := uint64(1<<anchorBits-1) << (64 - anchorBits)
	var h uint64
	for i, c := range chunk {
		h = h<<1 + gear[c]
		if i >= 63 && h&mask == 0 {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// resemblance maps the anchors of the base's chunks to the first maxHolders distinct chunks
// holding each. The base's last chunk is never a base: a device whose slot is longer than the
// base payload cuts it otherwise, running on into what follows it.
type resemblance struct {
	at    map[uint64][]int32
	votes map[int32]int
	buf   []uint64
	last  int
}

// maxHolders is how many base chunks an anchor counts for (docs/adaptive.md: counting it for
// the first one only let common bytes, such as file headers, outvote a file's old version).
const maxHolders = 8

func newResemblance() *resemblance {
	return &resemblance{at: map[uint64][]int32{}, votes: map[int32]int{}}
}

// add notes the anchors of base chunk i.
func (r *resemblance) add(i int, chunk []byte) {
	r.buf = anchors(chunk, r.buf)
	for _, h := range r.buf {
		if l := r.at[h]; len(l) < maxHolders {
			r.at[h] = append(l, int32(i))
		}
	}
}

// best returns the base chunk that holds the most of chunk's anchors (the first such one on
// a tie), or false when none holds any.
func (r *resemblance) best(chunk []byte) (int, bool) {
	r.buf = anchors(chunk, r.buf)
	clear(r.votes)
	best, most := int32(-1), 0
	for _, h := range r.buf {
		for _, i := range r.at[h] {
			if int(i) == r.last {
				continue
			}
			r.votes[i]++
			if v := r.votes[i]; v > most || v == most && i < best {
				best, most = i, v
			}
		}
	}
	return int(best), most > 0
}
