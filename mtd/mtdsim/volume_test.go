package mtdsim

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/aduflash/aduflash/mtd"
)

// A volume update erases the volume and marks it until exactly its bytes are written and it
// is closed; reads fail while it is marked; a power cut mid-update leaves it marked.
func TestVolume(t *testing.T) {
	v := NewVolume(1 << 10)
	data := bytes.Repeat([]byte("0123456789abcdef"), 32)
	write := func(size int64, parts ...[]byte) (io.WriteCloser, error) {
		t.Helper()
		u, err := v.Update(size)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if _, err := u.Write(p); err != nil {
				return u, err
			}
		}
		return u, nil
	}
	u, _ := write(int64(len(data)), data[:100], data[100:])
	if _, err := v.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrUpdateMarker) || !v.Marked() {
		t.Fatalf("read during the update: %v (marked %v)", err, v.Marked())
	}
	if err := u.Close(); err != nil || !bytes.Equal(v.Data(), data) || v.Marked() {
		t.Fatalf("close: %v; the volume holds %d bytes", err, len(v.Data()))
	}
	got := make([]byte, 64)
	if n, err := v.ReadAt(got, 480); n != 32 || err != io.EOF || !bytes.Equal(got[:32], data[480:]) {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
	// Too few bytes: the update fails and the volume stays marked (its old data gone).
	u, _ = write(int64(len(data)), data[:10])
	if err := u.Close(); !errors.Is(err, mtd.ErrUpdateSize) || !v.Marked() || v.Data() != nil {
		t.Fatalf("a short update: %v, marked %v", err, v.Marked())
	}
	if _, err := v.Update(2 << 10); !errors.Is(err, mtd.ErrOutOfRange) {
		t.Fatalf("an update past the reserved size: %v", err)
	}
	// A cut after 150 bytes: the write passing them writes up to them and fails, every call
	// after it fails until the power is back, and the volume stays marked.
	v.PowerCutAfterBytes(150)
	u, err := write(int64(len(data)), data[:100], data[100:200])
	if !errors.Is(err, mtd.ErrPowerCut) {
		t.Fatalf("the write past the cut: %v", err)
	}
	if _, err := u.Write(data[:1]); !errors.Is(err, mtd.ErrPowerCut) {
		t.Fatalf("a write after the cut: %v", err)
	}
	if _, err := v.ReadAt(got, 0); !errors.Is(err, mtd.ErrPowerCut) {
		t.Fatalf("a read after the cut: %v", err)
	}
	v.PowerOn()
	if _, err := v.ReadAt(got, 0); !errors.Is(err, ErrUpdateMarker) {
		t.Fatalf("a read after the power is back: %v", err)
	}
	u, _ = write(int64(len(data)), data)
	if err := u.Close(); err != nil || !bytes.Equal(v.Data(), data) {
		t.Fatalf("an update after the cut: %v", err)
	}
	if got := v.Updates(); len(got) != 4 {
		t.Fatalf("updates %v", got)
	}
}
