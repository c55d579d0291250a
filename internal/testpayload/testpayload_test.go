package testpayload

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func TestDeterministicAndSized(t *testing.T) {
	for _, size := range []int64{0, 1, blockSize - 1, blockSize, 3*blockSize + 17} {
		a, err := io.ReadAll(New(7, size))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(a)) != size {
			t.Fatalf("size %d: got %d bytes", size, len(a))
		}
		// Reading with odd buffer sizes yields the same bytes.
		var b bytes.Buffer
		r := New(7, size)
		buf := make([]byte, 333)
		for {
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err == io.EOF {
				break
			}
		}
		if !bytes.Equal(a, b.Bytes()) {
			t.Fatalf("size %d: not deterministic across buffer sizes", size)
		}
	}
	x, _ := io.ReadAll(New(1, 1<<20))
	y, _ := io.ReadAll(New(2, 1<<20))
	if bytes.Equal(x, y) {
		t.Fatal("different seeds gave the same payload")
	}
}

// TestFlip: only the byte at the offset differs, whatever the reads' sizes.
func TestFlip(t *testing.T) {
	want := Bytes(3, 10000)
	got, err := io.ReadAll(iotest.HalfReader(Flip(bytes.NewReader(want), 4321)))
	if err != nil {
		t.Fatal(err)
	}
	want = bytes.Clone(want)
	want[4321] ^= 0xff
	if !bytes.Equal(got, want) {
		t.Fatal("Flip changed other bytes than the one at its offset, or not that one")
	}
}
