// Package imagetest makes aduimg inputs that no signer makes, for tests of the code that reads
// images (docs/aduimg.md). It depends on the standard library only, so package image's own
// tests can use it too.
package imagetest

import (
	"encoding/binary"
	"errors"
	"runtime"
)

// Sizes of the format that a forged header is built from.
const (
	fixedSize = 104               // the fixed part
	metaSize  = 2 + 1 + 2 + 2 + 2 // version "1", no slot class, no pairs
	entrySize = 48                // one chunk table entry
	sigBlock  = 4 + 512           // the signature block
	chunkSize = 4096              // the smallest chunk size, which gives the most chunks
	maxHeader = 16 << 20          // the largest header
	baseSize  = fixedSize + metaSize + sigBlock
)

// MaxChunks is the most chunks a header can describe: a forged header with MaxChunks chunks is
// 16 MiB, the largest header a reader may read.
const MaxChunks = (maxHeader - baseSize) / entrySize

// ForgedHeader returns a well-formed header that announces chunks stored chunks of 4 KiB (a
// payload of chunks × 4096 bytes), every field consistent, with the key id and key type of
// signed (a signed aduimg image, so that a reader trusts its key) and the signature block of
// signed's header, which does not match the forged bytes. A reader that parses a header before
// it checks the signature spends memory on the chunk table; one that checks first refuses it.
func ForgedHeader(signed []byte, chunks int) []byte {
	le := binary.LittleEndian
	size := baseSize + entrySize*chunks
	b := make([]byte, size)
	copy(b, signed[:fixedSize]) // magic, version, key id and type, counter, created, payload hash
	le.PutUint32(b[12:], uint32(size))
	b[33] = 0 // compression none
	le.PutUint32(b[36:], chunkSize)
	le.PutUint64(b[40:], uint64(chunks)*chunkSize)
	le.PutUint32(b[64:], uint32(chunks))
	le.PutUint32(b[68:], metaSize)
	copy(b[fixedSize:], []byte{1, 0, '1', 0, 0, 0, 0, 0, 0})
	for i := range chunks {
		e := b[fixedSize+metaSize+i*entrySize:]
		le.PutUint64(e[32:], uint64(size)+uint64(i)*chunkSize) // frame offset
		le.PutUint32(e[40:], chunkSize)                        // frame length: stored
	}
	sig := int(le.Uint32(signed[12:])) - sigBlock
	copy(b[size-sigBlock:], signed[sig:sig+sigBlock])
	return b
}

// AllocatedDuring returns the bytes the heap handed out while f ran: how a test shows that a
// reader refused a ForgedHeader before it spent memory on it.
func AllocatedDuring(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// Buffer is an io.WriterAt in memory: where a test signs an image (image.Sign writes the
// frames, then the header in front of them) to have its bytes. The zero value is empty.
type Buffer struct{ b []byte }

// WriteAt writes p at off, growing the buffer as needed.
func (m *Buffer) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("imagetest: negative offset")
	}
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

// Bytes returns what was written.
func (m *Buffer) Bytes() []byte { return m.b }
