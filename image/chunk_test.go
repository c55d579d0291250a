package image

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// ReadChunk hands out the same verified bytes as Read, a whole chunk at a time into the
// caller's buffers (which the caller may keep while the next chunk loads), the rest of a
// chunk Read handed out in part, and io.EOF after the last chunk.
func TestReadChunk(t *testing.T) {
	key := testKeys.get(t, Ed25519)
	kr := keyringFor(t, key)
	for _, comp := range compressions {
		data := payload(5*MinChunkSize+77, 3)
		opts := compressedOpts(comp)
		img, _ := sign(t, key, data, opts)
		rd, err := NewReader(bytes.NewReader(img), VerifyOptions{Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 100)
		if _, err := io.ReadFull(rd, head); err != nil {
			t.Fatal(err)
		}
		got := [][]byte{head}
		bufs := [][]byte{make([]byte, MinChunkSize), make([]byte, MinChunkSize+10)}
		for i := 0; ; i++ {
			buf := bufs[i%2]
			n, err := rd.ReadChunk(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: chunk %d: %v", comp, i, err)
			}
			got = append(got, bytes.Clone(buf[:n]))
			if rd.RawOffset() != int64(len(bytes.Join(got, nil))) {
				t.Fatalf("%s: RawOffset %d after %d bytes", comp, rd.RawOffset(), len(bytes.Join(got, nil)))
			}
		}
		if len(got) != 7 || len(got[1]) != MinChunkSize-100 || !bytes.Equal(bytes.Join(got, nil), data) {
			t.Errorf("%s: %d pieces, payload equal %v", comp, len(got), bytes.Equal(bytes.Join(got, nil), data))
		}
	}
}

// ReadChunk keeps the Reader's promises: a bad chunk is an error (no bytes), the last chunk
// comes only once the stream ended right after it, and a buffer too small for a chunk is
// refused before anything is read.
func TestReadChunkRefuses(t *testing.T) {
	img, data, kr := smallImage(t, CompressNone)
	hs := int64(get32(img[12:]))
	bad := bytes.Clone(img)
	bad[hs+2*MinChunkSize-1] ^= 1
	trailing := append(bytes.Clone(img), 0)
	for _, tc := range []struct {
		name   string
		img    []byte
		chunks int // chunks handed out before the error
		want   error
	}{
		{"bad chunk 1", bad, 1, ErrChunkHash},
		{"trailing byte", trailing, 3, ErrTrailingData},
	} {
		rd, err := NewReader(bytes.NewReader(tc.img), VerifyOptions{Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, MinChunkSize)
		var got []byte
		for {
			n, err := rd.ReadChunk(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				if !errors.Is(err, tc.want) || n != 0 {
					t.Errorf("%s: %d bytes, %v", tc.name, n, err)
				}
				break
			}
		}
		if !bytes.Equal(got, data[:tc.chunks*MinChunkSize]) {
			t.Errorf("%s: %d bytes handed out, want %d chunks", tc.name, len(got), tc.chunks)
		}
	}
	rd, _ := NewReader(bytes.NewReader(img), VerifyOptions{Keyring: kr})
	if n, err := rd.ReadChunk(make([]byte, MinChunkSize-1)); n != 0 || err == nil {
		t.Errorf("a short buffer: %d, %v", n, err)
	}
	if n, err := rd.ReadChunk(make([]byte, MinChunkSize)); n != MinChunkSize || err != nil {
		t.Errorf("after a short buffer: %d, %v", n, err)
	}
}

// VerifyAt hashes on several cores but reads in order, one read at a time, and reports the
// chunk a read of the chunks in turn would find first: the lowest bad one, or a read
// error, with nothing read after it.
func TestVerifyAtFirstBadChunk(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0))))
	key := testKeys.get(t, Ed25519)
	data := payload(40*MinChunkSize, 9)
	_, h := sign(t, key, data, baseOpts())
	boom := errors.New("read error")
	for _, tc := range []struct {
		name     string
		bad      []int // chunks whose bytes differ
		fail     int   // the chunk whose read fails (-1: none)
		want     int   // the chunk reported
		wantRead error
	}{
		{"whole", nil, -1, -1, nil},
		{"one bad", []int{23}, -1, 23, nil},
		{"two bad side by side", []int{7, 8}, -1, 7, nil},
		{"bad before a failed read", []int{3}, 5, 3, nil},
		{"failed read before a bad one", []int{9}, 5, 5, boom},
		{"last", []int{39}, -1, 39, nil},
	} {
		for range 20 {
			slot := bytes.Clone(data)
			for _, i := range tc.bad {
				slot[i*MinChunkSize+100] ^= 1
			}
			ra := &orderedReaderAt{t: t, b: slot, fail: int64(tc.fail) * MinChunkSize, err: boom}
			if tc.fail < 0 {
				ra.fail = -1
			}
			err := h.VerifyAt(ra)
			var ce *ChunkError
			switch {
			case tc.want < 0 && err != nil:
				t.Fatalf("%s: %v", tc.name, err)
			case tc.wantRead != nil && !errors.Is(err, tc.wantRead):
				t.Fatalf("%s: %v, want the read error", tc.name, err)
			case tc.wantRead == nil && tc.want >= 0 && (!errors.As(err, &ce) || ce.Index != tc.want):
				t.Fatalf("%s: %v, want chunk %d", tc.name, err, tc.want)
			}
			if tc.fail >= 0 && ra.last > ra.fail {
				t.Fatalf("%s: read at %d after the failed read at %d", tc.name, ra.last, ra.fail)
			}
		}
	}
}

// orderedReaderAt serves b, failing the read at fail, and fails the test if two reads
// overlap in time or go backwards.
type orderedReaderAt struct {
	t     *testing.T
	b     []byte
	fail  int64
	err   error
	busy  atomic.Bool
	mu    sync.Mutex
	last  int64
	reads int
}

func (o *orderedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if !o.busy.CompareAndSwap(false, true) {
		o.t.Error("two reads at once")
	}
	defer o.busy.Store(false)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.reads > 0 && off <= o.last {
		o.t.Errorf("read at %d after one at %d", off, o.last)
	}
	o.reads++
	o.last = off
	if off == o.fail {
		return 0, o.err
	}
	return copy(p, o.b[off:]), nil
}
