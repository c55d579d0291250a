package slots

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// fakeMCU takes frames of at most frame bytes at the offset it expects and answers where its
// upload stands, as an SMP server does.
type fakeMCU struct {
	frame int
	got   []byte
	sent  int64 // bytes sent to it, taken or not
}

func (f *fakeMCU) Upload(off int64, data []byte) (int, int64, error) {
	n := min(len(data), f.frame)
	f.sent += int64(n)
	if off != int64(len(f.got)) {
		return n, int64(len(f.got)), nil
	}
	f.got = append(f.got, data[:n]...)
	return n, int64(len(f.got)), nil
}

func mcuConfig(t *testing.T, extra string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(strings.Replace(string(mcuDoc), "#extra\n", extra, 1)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The writer streams the image frame by frame and skips what the MCU reports it holds.
func TestMCUWriter(t *testing.T) {
	c := mcuConfig(t, "")
	l := NewLayout(c, Env{})
	img := payload(3000, 1)
	for _, held := range []int{0, 1000, 3000} {
		f := &fakeMCU{frame: 100, got: bytes.Clone(img[:held])}
		w, err := l.MCUTarget(c.MCU("motor"), resumeAt{f}).OpenWriter(int64(len(img)), nil)
		if err != nil {
			t.Fatal(err)
		}
		for p := img; len(p) > 0; p = p[min(len(p), 700):] {
			if _, err := w.Write(p[:min(len(p), 700)]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.got, img) {
			t.Fatalf("held %d: the MCU holds %d bytes, not the image", held, len(f.got))
		}
		// What the MCU held is not sent again, beyond the first frame that asks where it stands.
		if want := int64(len(img)-held) + 100; f.sent > want {
			t.Errorf("held %d: %d bytes sent, want at most %d", held, f.sent, want)
		}
		if st := w.Stats(); st.BytesWritten+st.BytesSkipped < int64(len(img)) {
			t.Errorf("held %d: stats %+v", held, st)
		}
	}
	if _, err := l.MCUTarget(c.MCU("motor"), &fakeMCU{frame: 100}).OpenWriter(5000, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("an image larger than the MCU's slot: %v", err)
	}
}

// resumeAt asks where the MCU stands with the frame at 0, as an SMP link does (a frame at 0
// with the image's sha is answered with the MCU's offset).
type resumeAt struct{ f *fakeMCU }

func (r resumeAt) Upload(off int64, data []byte) (int, int64, error) {
	if off == 0 && len(r.f.got) > 0 {
		r.f.sent += int64(min(len(data), r.f.frame))
		return min(len(data), r.f.frame), int64(len(r.f.got)), nil
	}
	return r.f.Upload(off, data)
}

// An MCU that lost its upload (a reset) stands before the stream: the writer says so.
func TestMCUWriterBehind(t *testing.T) {
	c := mcuConfig(t, "")
	f := &fakeMCU{frame: 100}
	w, err := NewLayout(c, Env{}).MCUTarget(c.MCU("motor"), f).OpenWriter(1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	img := payload(1000, 2)
	if _, err := w.Write(img[:500]); err != nil {
		t.Fatal(err)
	}
	f.got = f.got[:0]
	if _, err := w.Write(img[500:]); !errors.Is(err, ErrMCUBehind) {
		t.Fatalf("after the MCU lost its upload: %v", err)
	}
}

func TestMCUConfig(t *testing.T) {
	c := mcuConfig(t, `[[slots.mcu]]
name = "radio"
class = "radio-fw"
transport = "serial"
port = "/dev/ttyACM0"
slot_size = "128KiB"
health_command = ["/bin/true"]
`)
	m := c.MCU("radio-fw")
	if m == nil || m.Baud != DefaultMCUBaud || m.LineSize != DefaultMCULineSize || m.BootTimeout != DefaultMCUBootTimeout || m.SlotSize != 128<<10 {
		t.Fatalf("defaults: %+v", m)
	}
	if c.MCU("motor").Name != "motor" || c.MCU("rootfs") != nil {
		t.Fatal("MCU by class")
	}
	if got := c.BankedClasses(); len(got) != 1 || got[0] != "rootfs" {
		t.Fatalf("an MCU's class is no bank's: %v", got)
	}
	for _, tc := range []struct{ extra, want string }{
		{"[[slots.mcu]]\nclass = \"rootfs\"\ntransport = \"udp\"\naddress = \"x\"\nslot_size = 4096\n", "already a slot's"},
		{"[[slots.mcu]]\nclass = \"motor\"\ntransport = \"udp\"\naddress = \"x\"\nslot_size = 4096\n", "already a slot's or another MCU's"},
		{"[[slots.mcu]]\nclass = \"x\"\ntransport = \"can\"\nslot_size = 4096\n", `transport "can"`},
		{"[[slots.mcu]]\nclass = \"x\"\ntransport = \"serial\"\nslot_size = 4096\n", "takes port"},
		{"[[slots.mcu]]\nclass = \"x\"\ntransport = \"udp\"\naddress = \"h\"\nbaud = 9600\nslot_size = 4096\n", "not port, baud"},
		{"[[slots.mcu]]\nclass = \"x\"\ntransport = \"udp\"\naddress = \"h\"\n", "slot_size is required"},
		{"[[slots.mcu]]\nclass = \"a/b\"\ntransport = \"udp\"\naddress = \"h\"\nslot_size = 4096\n", "want a name"},
		{"[[slots.mcu]]\nclass = \"x\"\ntransport = \"udp\"\naddress = \"h\"\nslot_size = 4096\ncolour = 1\n", "slots.mcu.colour"},
		{"[[slots.mcu]]\nclass = \"x\"\ntransport = \"udp\"\naddress = \"h\"\nslot_size = 4096\ntimeout = 5\n", "with a unit"},
	} {
		_, err := ParseConfig([]byte(strings.Replace(string(mcuDoc), "#extra\n", tc.extra, 1)))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.extra, err, tc.want)
		}
	}
}

var mcuDoc = []byte(`[slots]
` + abFileSlots + `[[slots.mcu]]
class = "motor"
transport = "udp"
address = "127.0.0.1:1337"
slot_size = "4KiB"
#extra
`)

// An MCU that keeps answering the offset it stands at without taking the frame stops the
// write after a few frames.
func TestMCUWriterStalls(t *testing.T) {
	c := mcuConfig(t, "")
	w, err := NewLayout(c, Env{}).MCUTarget(c.MCU("motor"), stuckMCU{}).OpenWriter(1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(payload(1000, 3)); err == nil || !strings.Contains(err.Error(), "without taking the data") {
		t.Fatalf("a stuck MCU: %v", err)
	}
}

type stuckMCU struct{}

func (stuckMCU) Upload(off int64, data []byte) (int, int64, error) {
	return min(len(data), 100), off, nil
}
