package fastboot_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/aduflash/aduflash/recovery/fastboot"
)

// The parsers of what a device sends: the packet header, the fastboot responses, and a whole
// session of answers (go test -fuzz=FuzzSession ./recovery/fastboot).

func FuzzParsePacket(f *testing.F) {
	for _, s := range ubootSession() {
		f.Add(s)
	}
	f.Add([]byte{3, 1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, data, err := fastboot.ParsePacket(b)
		if err != nil {
			if !errors.Is(err, fastboot.ErrProtocol) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if h.Flags&^fastboot.FlagContinuation != 0 {
			t.Fatalf("reserved flags accepted: %#x", h.Flags)
		}
		if again := fastboot.AppendPacket(nil, h, data); !bytes.Equal(again, b) {
			t.Fatalf("re-encoded packet % x differs from % x", again, b)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{"OKAY0.4", "OKAY", "FAILno such partition", "DATA0004b011", "INFOwriting", "DATA1", "XXXX", "FAIL\x1b[31m"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := fastboot.ParseResponse(b)
		if err != nil {
			if !errors.Is(err, fastboot.ErrProtocol) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		switch r.Kind {
		case fastboot.Okay, fastboot.Fail, fastboot.Info:
		case fastboot.Data:
			if n, err := r.DataSize(); err != nil || n < 0 || n > 0xffffffff {
				t.Fatalf("DATA size %d, %v", n, err)
			}
		default:
			t.Fatalf("kind %q accepted", r.Kind)
		}
		for _, c := range r.Message {
			if !unicode.IsPrint(c) {
				t.Fatalf("message %q has an unprintable character", r.Message)
			}
		}
	})
}

// FuzzSession plays a device whose answers are the input (each a length byte and that many
// bytes) to a session that reads a variable and flashes 3000 bytes: whatever the answers, the
// client ends with a classified error or success, and it never sends the flash command
// before the device confirmed the whole download.
func FuzzSession(f *testing.F) {
	f.Add(frame(ubootSession()))
	f.Add(frame(ubootSession()[:9]))
	f.Add([]byte{4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &scripted{answers: unframe(in)}
		opts := fastboot.Options{Timeout: time.Millisecond, Attempts: 2, ConnectAttempts: 2}
		c, err := fastboot.New(context.Background(), conn, opts)
		if err == nil {
			_, err = c.GetVar(context.Background(), "version")
		}
		if err == nil {
			err = c.Flash(context.Background(), "p", bytes.NewReader(make([]byte, 3000)), 3000)
		}
		var fail *fastboot.FailError
		if err != nil && !errors.As(err, &fail) && !isAny(err, fastboot.ErrProtocol, fastboot.ErrNoResponse, fastboot.ErrTooLarge) {
			t.Fatalf("unclassified error: %v", err)
		}
		if conn.flashedEarly {
			t.Fatal("the flash command went before the device confirmed the download")
		}
	})
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// ubootSession is what U-Boot answers the session of FuzzSession, packet by packet.
func ubootSession() [][]byte {
	pkt := func(id byte, seq uint16, data string) []byte {
		return fastboot.AppendPacket(nil, fastboot.Header{ID: id, Seq: seq}, []byte(data))
	}
	out := [][]byte{pkt(fastboot.IDQuery, 0, "\x00\x01"), pkt(fastboot.IDInit, 1, "\x00\x01\x04\x00")}
	seq := uint16(2)
	answer := func(data ...string) {
		for _, d := range data {
			out = append(out, pkt(fastboot.IDFastboot, seq, d))
			seq++
		}
	}
	answer("", "OKAY0.4", "", "OKAY0x08000000", "", "OKAY0x0000000000400000", "", "DATA00000bb8", "", "", "", "OKAY", "", "OKAY")
	return out
}

func frame(pkts [][]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = append(append(b, byte(len(p))), p...)
	}
	return b
}

func unframe(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(int(b[0]), len(b)-1)
		out = append(out, b[1:1+n])
		b = b[1+n:]
	}
	return out
}

// scripted is a device connection whose answers are given: one per Read, then timeouts. It
// notes a flash command sent before an OKAY that follows a download's data.
type scripted struct {
	answers      [][]byte
	downloading  bool
	confirmed    bool
	flashedEarly bool
}

func (s *scripted) Read(p []byte) (int, error) {
	if len(s.answers) == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	if s.downloading && len(a) >= 8 && string(a[4:8]) == "OKAY" {
		s.confirmed = true
	}
	return copy(p, a), nil
}

func (s *scripted) Write(p []byte) (int, error) {
	data := string(p[fastboot.HeaderSize:])
	switch {
	case strings.HasPrefix(data, "download:"):
		s.downloading, s.confirmed = true, false
	case strings.HasPrefix(data, "flash:"):
		if !s.downloading || !s.confirmed {
			s.flashedEarly = true
		}
	}
	return len(p), nil
}

func (s *scripted) Close() error                     { return nil }
func (s *scripted) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (s *scripted) RemoteAddr() net.Addr             { return &net.UDPAddr{Port: fastboot.DefaultPort} }
func (s *scripted) SetDeadline(time.Time) error      { return nil }
func (s *scripted) SetReadDeadline(time.Time) error  { return nil }
func (s *scripted) SetWriteDeadline(time.Time) error { return nil }
