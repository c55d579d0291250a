package readahead

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

func TestReadAheadDeliversEverything(t *testing.T) {
	data := make([]byte, 3*1000+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, size := range []int{1, 10, 1000, 5000} {
		ra := New(iotest.OneByteReader(bytes.NewReader(data)), size, 3)
		got, err := io.ReadAll(ra)
		ra.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("block size %d: %d bytes, %v", size, len(got), err)
		}
	}
	ra := New(bytes.NewReader(data), 64, 2)
	if err := iotest.TestReader(ra, data); err != nil {
		t.Fatal(err)
	}
	ra.Close()
}

func TestReadAheadPassesErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader([]byte("abcdef")), iotest.ErrReader(boom))
	ra := New(r, 4, 2)
	defer ra.Close()
	got, err := io.ReadAll(ra)
	if !errors.Is(err, boom) || string(got) != "abcdef" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// Close returns while the producer is blocked on a full queue, and later reads fail.
func TestReadAheadClose(t *testing.T) {
	ra := New(bytes.NewReader(make([]byte, 1<<20)), 1024, 2)
	buf := make([]byte, 10)
	if _, err := ra.Read(buf); err != nil {
		t.Fatal(err)
	}
	ra.Close()
	ra.Close()
}

func TestReadAheadWriteTo(t *testing.T) {
	data := make([]byte, 5*4096+3)
	for i := range data {
		data[i] = byte(i * 13)
	}
	ra := New(bytes.NewReader(data), 4096, 2)
	defer ra.Close()
	// Part by Read, the rest by WriteTo (what io.Copy uses).
	head := make([]byte, 100)
	if _, err := io.ReadFull(ra, head); err != nil {
		t.Fatal(err)
	}
	var rest bytes.Buffer
	n, err := io.Copy(&rest, ra)
	if err != nil || n != int64(len(data)-100) || !bytes.Equal(append(head, rest.Bytes()...), data) {
		t.Fatalf("WriteTo: %d, %v", n, err)
	}
	boom := errors.New("disk on fire")
	ra2 := New(io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(boom)), 4, 2)
	defer ra2.Close()
	if _, err := io.Copy(io.Discard, ra2); !errors.Is(err, boom) {
		t.Fatalf("error through WriteTo: %v", err)
	}
}

// Blocks end at the stops, and Mark tells the mark taken there, and at the end, when the
// consumer stands there.
func TestReadAheadMarks(t *testing.T) {
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	src := &offsetReader{r: bytes.NewReader(data)}
	stops := []int64{10, 250, 260, 700}
	ra := NewMarked(src, 100, 2, Marks[int64]{
		Stop: func(off int64) int64 {
			for _, s := range stops {
				if s > off {
					return s
				}
			}
			return 1 << 40
		},
		Mark: func() int64 { return src.off },
	})
	defer ra.Close()
	if _, ok := ra.Mark(); ok {
		t.Fatal("a mark before the first block")
	}
	var got []byte
	var marks []int64
	buf := make([]byte, 64)
	for {
		n, err := ra.Read(buf)
		got = append(got, buf[:n]...)
		m, ok := ra.Mark()
		if ok && m != int64(len(got)) {
			t.Fatalf("after %d bytes: mark %d", len(got), m)
		}
		if ok {
			marks = append(marks, m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the data differs")
	}
	if want := append(slices.Clone(stops), int64(len(data))); !slices.Equal(slices.Compact(marks), want) {
		t.Errorf("marks %v, want the stops and the end %v", marks, want)
	}
	if m, ok := ra.Mark(); !ok || m != int64(len(data)) {
		t.Errorf("mark at the end: %d, %v", m, ok)
	}
}

// offsetReader counts the bytes read from r.
type offsetReader struct {
	r   io.Reader
	off int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.off += int64(n)
	return n, err
}
