package powercut

import (
	"crypto"
	"slices"

	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/adaptivetest"
)

// The Adaptive scenario's files.
const (
	adaptiveImage = "fadapt"
	adaptiveIndex = "fadidx"
	adaptiveStore = "fadstore"
)

// adaptiveFiles is the Adaptive scenario's index and which of its chunks bank A holds.
type adaptiveFiles struct {
	index    *adaptive.Index
	indexLen int64
	held     map[adaptive.Sum]bool
}

// adaptiveUpdate is an update of the rootfs with an adaptive index: bank A's rootfs with fresh
// bytes put in and added, so that the device fetches only the chunks that hold them.
func (f *Fixture) adaptiveUpdate(key crypto.Signer) (*update, error) {
	old := f.bankA["rootfs"]
	raw := slices.Concat(old[:40<<10], adaptivetest.Noise(3, 40<<10), old[40<<10:], adaptivetest.Noise(4, 24<<10))
	img, err := signImage(key, raw, "rootfs", "2.0")
	if err != nil {
		return nil, err
	}
	x, idx, store, err := adaptivetest.Index(img, f.keyring, old)
	if err != nil {
		return nil, err
	}
	u, err := f.sign("Toaster", map[string][]byte{adaptiveImage: img, adaptiveIndex: idx, adaptiveStore: store},
		step{file: adaptiveImage, class: "rootfs", index: adaptiveIndex, store: adaptiveStore})
	if err != nil {
		return nil, err
	}
	u.writes = map[string][]byte{"rootfs": raw}
	u.adaptive = &adaptiveFiles{index: x, indexLen: int64(len(idx)), held: adaptivetest.Held(x, old)}
	return u, nil
}

// checkFetched checks what a start of the Adaptive scenario fetched: the index at most once,
// of the image its header only (never the whole file), and from the chunk store no more than
// the chunks bank A lacks past what the journal had verified: no verified chunk is fetched
// again.
func (b *board) checkFetched(boot int, sent map[string]int64, verified int64) {
	a := b.u.adaptive
	if a == nil {
		return
	}
	bound := adaptivetest.StoreBound(a.index, a.held, verified)
	if sent[adaptiveIndex] > a.indexLen || sent[adaptiveImage] > a.index.HeaderSize || sent[adaptiveStore] > bound {
		b.problem("boot %d fetched %d bytes of the index (%d long), %d of the image (its header: %d), %d of the chunk store (at most %d past the verified %d)",
			boot, sent[adaptiveIndex], a.indexLen, sent[adaptiveImage], a.index.HeaderSize, sent[adaptiveStore], bound, verified)
	}
}
