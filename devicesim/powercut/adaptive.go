package powercut

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
)

// The Adaptive scenario's files.
const (
	adaptiveImage = "fadapt"
	adaptiveIndex = "fadidx"
	adaptiveStore = "fadstore"
	// rangeGap is the gap between two needed frames that one request may span
	// (docs/adaptive.md: up to 4 KiB is fetched rather than split).
	rangeGap = 4 << 10
)

// adaptiveFiles is the Adaptive scenario's index and which of its chunks bank A holds.
type adaptiveFiles struct {
	index    *adaptive.Index
	indexLen int64
	held     map[image.Digest]bool
}

// adaptiveUpdate is an update of the rootfs with an adaptive index: bank A's rootfs with fresh
// bytes put in and added, so that the device fetches only the chunks that hold them.
func (f *Fixture) adaptiveUpdate(key crypto.Signer) (*update, error) {
	old := f.bankA["rootfs"]
	raw := slices.Concat(old[:40<<10], noise(3, 40<<10), old[40<<10:], noise(4, 24<<10))
	img, err := signImage(key, raw, "rootfs", "2.0")
	if err != nil {
		return nil, err
	}
	rd, err := image.NewReader(bytes.NewReader(img), image.VerifyOptions{Keyring: f.keyring})
	if err != nil {
		return nil, err
	}
	var store bytes.Buffer
	x, err := adaptive.Build(rd.Header(), rd, adaptive.DefaultParams, &store)
	if err != nil {
		return nil, err
	}
	idx := x.Encode()
	u, err := f.sign("Toaster", map[string][]byte{adaptiveImage: img, adaptiveIndex: idx, adaptiveStore: store.Bytes()},
		step{file: adaptiveImage, class: "rootfs", index: adaptiveIndex, store: adaptiveStore})
	if err != nil {
		return nil, err
	}
	u.writes = map[string][]byte{"rootfs": raw}
	u.adaptive = &adaptiveFiles{index: x, indexLen: int64(len(idx)), held: map[image.Digest]bool{}}
	err = x.Params.Split(bytes.NewReader(old), func(_ int64, chunk []byte) error {
		u.adaptive.held[sha256.Sum256(chunk)] = true
		return nil
	})
	return u, err
}

// noise is n incompressible bytes.
func noise(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// storeBound is the most a start may fetch from the chunk store when the journal has verified
// the payload up to offset verified: the frames of the chunks bank A lacks that end past it,
// each once, and the gaps of up to rangeGap between them that a coalesced request spans.
func (a *adaptiveFiles) storeBound(verified int64) int64 {
	var frames [][2]int64
	seen := map[int64]bool{}
	for _, e := range a.index.Entries {
		if e.Offset+int64(e.Size) > verified && !a.held[e.SHA256] && !seen[e.Frame] {
			seen[e.Frame] = true
			frames = append(frames, [2]int64{e.Frame, e.Frame + int64(e.FrameN)})
		}
	}
	sort.Slice(frames, func(i, j int) bool { return frames[i][0] < frames[j][0] })
	var n int64
	for i, fr := range frames {
		n += fr[1] - fr[0]
		if i > 0 {
			if gap := fr[0] - frames[i-1][1]; gap > 0 && gap <= rangeGap {
				n += gap
			}
		}
	}
	return n
}

// checkFetched checks what a start of the Adaptive scenario fetched: the index at most once,
// of the image its header only (never the whole file), and from the chunk store no more than
// storeBound of what the journal had verified: no verified chunk is fetched again.
func (b *board) checkFetched(boot int, sent map[string]int64, verified int64) {
	a := b.u.adaptive
	if a == nil {
		return
	}
	if bound := a.storeBound(verified); sent[adaptiveIndex] > a.indexLen || sent[adaptiveImage] > a.index.HeaderSize || sent[adaptiveStore] > bound {
		b.problem("boot %d fetched %d bytes of the index (%d long), %d of the image (its header: %d), %d of the chunk store (at most %d past the verified %d)",
			boot, sent[adaptiveIndex], a.indexLen, sent[adaptiveImage], a.index.HeaderSize, sent[adaptiveStore], bound, verified)
	}
}
