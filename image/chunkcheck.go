package image

import (
	"crypto/sha256"
	"hash"
	"sync"
)

// ChunkCheck checks chunk i of the payload as its bytes are put together, piece by piece in
// order: each piece is hashed (and written to the payload's hash, if given) on goroutines of
// its own while the caller puts the next one together; Done waits for them and checks the
// chunk as VerifyChunk does. A piece must not change until Done returns.
type ChunkCheck struct {
	h     *Header
	i     int
	n     int
	sum   hash.Hash
	feeds []chan []byte
	wg    sync.WaitGroup
	done  bool
	err   error
}

// checkQueue is how many pieces a ChunkCheck takes ahead of its hashers.
const checkQueue = 64

// NewChunkCheck starts the check of chunk i; whole (nil: none) is the payload's hash so far,
// which takes every piece, even of a chunk that does not match.
func (h *Header) NewChunkCheck(i int, whole hash.Hash) *ChunkCheck {
	c := &ChunkCheck{h: h, i: i, sum: sha256.New()}
	for _, w := range []hash.Hash{c.sum, whole} {
		if w == nil {
			continue
		}
		feed := make(chan []byte, checkQueue)
		c.feeds = append(c.feeds, feed)
		c.wg.Go(func() {
			for p := range feed {
				w.Write(p)
			}
		})
	}
	return c
}

// Add hashes the next piece of the chunk.
func (c *ChunkCheck) Add(p []byte) {
	c.n += len(p)
	for _, feed := range c.feeds {
		feed <- p
	}
}

// Done waits for the pieces to be hashed and checks the chunk: its size and SHA-256 against
// the header (a *ChunkError when they do not match). Later calls return the first one's
// result (a caller that gives up on a chunk may call it to stop the hashers); Add after Done
// panics, as a send on a closed channel.
func (c *ChunkCheck) Done() error {
	if c.done {
		return c.err
	}
	c.done = true
	for _, feed := range c.feeds {
		close(feed)
	}
	c.wg.Wait()
	ch, err := c.h.chunkSized(c.i, c.n)
	if err == nil {
		err = chunkHashed(c.i, ch, Digest(c.sum.Sum(nil)))
	}
	c.err = err
	return err
}
