package smp_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/smp"
)

// fakeDevice answers each request on a serial line with what reply returns (raw line bytes).
func fakeDevice(t *testing.T, reply func(h smp.Header) []byte) *smp.Client {
	t.Helper()
	dev, host := net.Pipe()
	go func() {
		br := bufio.NewReader(dev)
		var ra smp.Reassembler
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			if p, _ := ra.Line(line); p != nil {
				h, _, _ := smp.DecodePacket(p)
				if _, err := dev.Write(reply(h)); err != nil {
					return
				}
			}
		}
	}()
	c := smp.NewClient(smp.NewSerial(host, smp.SerialOptions{}), smp.Options{Timeout: 50 * time.Millisecond, Retries: 1})
	t.Cleanup(func() { c.Close(); dev.Close() })
	return c
}

// answer frames a reply to h with body, changed by edit.
func answer(h smp.Header, body []byte, edit func(*smp.Header)) []byte {
	h.Op++
	if edit != nil {
		edit(&h)
	}
	return smp.AppendFrame(nil, smp.EncodePacket(h, body), 0)
}

var echoed = []byte{0xa1, 0x61, 'r', 0x62, 'h', 'i'} // {"r": "hi"}

func TestGarbledReplies(t *testing.T) {
	for name, c := range map[string]struct {
		reply func(h smp.Header) []byte
		want  []error
		text  string
	}{
		"bad CRC": {func(h smp.Header) []byte {
			l := answer(h, echoed, nil)
			l[len(l)-3] ^= 1 // a base64 character of the CRC
			return l
		}, []error{smp.ErrTimeout, smp.ErrFrame}, "CRC"},
		"not CBOR": {func(h smp.Header) []byte { return answer(h, []byte{0xff, 0x00}, nil) }, []error{smp.ErrReply}, "not a CBOR map"},
		"other command": {func(h smp.Header) []byte {
			return answer(h, echoed, func(r *smp.Header) { r.ID = 9 })
		}, []error{smp.ErrTimeout, smp.ErrPacket}, "group 0 command 9"},
		"silent":       {func(smp.Header) []byte { return []byte("booting...\r\n") }, []error{smp.ErrTimeout}, "sent 2 times"},
		"device error": {func(h smp.Header) []byte { return answer(h, []byte{0xa1, 0x62, 'r', 'c', 0x03}, nil) }, []error{smp.ErrDevice}, "rc 3 (invalid argument)"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := fakeDevice(t, c.reply).Echo(context.Background(), "hi")
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Errorf("error %v is not %v", err, w)
				}
			}
			if err == nil || !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %v does not say %q", err, c.text)
			}
		})
	}
}

// A stale reply (to an earlier request's sequence number) is dropped; the right one counts.
func TestStaleReplyDropped(t *testing.T) {
	c := fakeDevice(t, func(h smp.Header) []byte {
		stale := answer(h, []byte{0xa1, 0x61, 'r', 0x65, 's', 't', 'a', 'l', 'e'}, func(r *smp.Header) { r.Seq-- })
		return append(stale, answer(h, echoed, nil)...)
	})
	for range 3 {
		if r, err := c.Echo(context.Background(), "hi"); err != nil || r != "hi" {
			t.Fatalf("echo = %q, %v", r, err)
		}
	}
}
