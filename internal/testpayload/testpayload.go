// Package testpayload generates deterministic test payloads that look like a root file
// system to a compressor: runs of zeros (free space), repeated text (configuration, scripts)
// and incompressible bytes (already-compressed files), in blocks chosen by a seeded PRNG. Tests,
// benchmarks and the examples use it so that no large fixture is committed.
package testpayload

import (
	"io"
	"math/rand/v2"
)

const blockSize = 64 << 10

var text = []byte("#!/bin/sh\n# sample configuration\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n" +
	"[Unit]\nDescription=aduflash test payload\nAfter=network-online.target\n\n")

// Reader yields size bytes determined by seed.
type Reader struct {
	left  int64
	rng   *rand.Rand
	block []byte
	pos   int
}

// New returns a Reader of exactly size bytes.
func New(seed uint64, size int64) *Reader {
	return &Reader{left: size, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (r *Reader) fill() {
	if r.block == nil {
		r.block = make([]byte, blockSize)
	}
	switch k := r.rng.IntN(8); {
	case k < 3: // free space
		clear(r.block)
	case k < 5: // text
		for i := 0; i < len(r.block); i += copy(r.block[i:], text) {
		}
	default: // compressed data
		for i := 0; i+8 <= len(r.block); i += 8 {
			v := r.rng.Uint64()
			for j := 0; j < 8; j++ {
				r.block[i+j] = byte(v >> (8 * j))
			}
		}
	}
	r.pos = 0
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		if r.block == nil || r.pos == len(r.block) {
			r.fill()
		}
		m := copy(p[n:], r.block[r.pos:])
		if int64(m) > r.left {
			m = int(r.left)
		}
		r.pos += m
		r.left -= int64(m)
		n += m
	}
	return n, nil
}

// Bytes returns the size bytes of New(seed, size) in memory.
func Bytes(seed uint64, size int64) []byte {
	b, _ := io.ReadAll(New(seed, size)) // a Reader never fails
	return b
}

// Flip returns r with the byte at offset at inverted: a transfer damaged on the way.
func Flip(r io.Reader, at int64) io.Reader { return &flipper{r: r, at: at} }

type flipper struct {
	r       io.Reader
	at, off int64
}

func (f *flipper) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if i := f.at - f.off; i >= 0 && i < int64(n) {
		p[i] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}
