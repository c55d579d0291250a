package tftpserve

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/testpayload"
)

// winClient receives a file as RFC 7440 says, as U-Boot does: it ACKs every W-th block and
// the last; a block out of order gets one ACK of the last block in order (a nack) and is
// dropped. drop, if set, loses a DATA packet before the client sees it (seen: how many times
// that block arrived before); onData, if set, runs for each DATA packet it keeps.
type winClient struct {
	drop   func(block uint16, seen int) bool
	onData func(block uint16, server *net.UDPAddr)
	acks   []uint16 // the ACKs sent, in order
}

// get asks addr for name with the request options opts and returns the bytes, the OACK's
// options and the error the server sent, if it sent one.
func (c *winClient) get(t *testing.T, addr, name string, opts ...string) ([]byte, map[string]string, error) {
	t.Helper()
	conn, to := loopbackUDP(t, addr)
	if _, err := conn.WriteTo(rrq(opRRQ, append([]string{name, "octet"}, opts...)...), to); err != nil {
		t.Fatal(err)
	}
	var (
		data     []byte
		oack     map[string]string
		tid      *net.UDPAddr
		prev     uint16 // the last block in order
		inWindow int
		lastNack = -1
		seen     = map[uint16]int{}
		buf      = make([]byte, 70000)
	)
	window, blksize := 1, 512
	ack := func(b uint16) {
		c.acks = append(c.acks, b)
		conn.WriteToUDP(binary.BigEndian.AppendUint16([]byte{0, opACK}, b), tid)
	}
	for {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(data), err)
		}
		if tid == nil {
			tid = from
		} else if from.Port != tid.Port {
			t.Fatalf("a packet from port %d, the transfer's is %d", from.Port, tid.Port)
		}
		p := buf[:n]
		op, num := binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
		switch op {
		case opERROR:
			_, msg, _ := tftpError(p)
			return data, oack, errors.New(msg)
		case opOACK:
			oack = optionMap(p[2:])
			if w, err := strconv.Atoi(oack["windowsize"]); err == nil {
				window = w
			}
			if b, err := strconv.Atoi(oack["blksize"]); err == nil {
				blksize = b
			}
			ack(0)
			continue
		}
		seen[num]++
		if c.drop != nil && c.drop(num, seen[num]-1) {
			continue
		}
		if num != prev+1 {
			if num-(prev+1) < 0x8000 && int(num) != lastNack { // ahead: one nack per block
				ack(prev)
				lastNack = int(num)
			}
			continue
		}
		if c.onData != nil {
			c.onData(num, tid)
		}
		data = append(data, p[4:]...)
		prev, inWindow = num, inWindow+1
		last := len(p)-4 < blksize
		if inWindow == window || last {
			ack(num)
			inWindow = 0
		}
		if last {
			return data, oack, nil
		}
	}
}

// optionMap reads the name, NUL, value, NUL pairs of an OACK.
func optionMap(p []byte) map[string]string {
	f := bytes.Split(p, []byte{0})
	m := map[string]string{}
	for i := 0; i+1 < len(f); i += 2 {
		m[string(f[i])] = string(f[i+1])
	}
	return m
}

// windowServer serves a fixture of a 200 KiB payload (rootfs.aduimg) with srv's settings.
func windowServer(t *testing.T, srv *Server) (*fixture, string, *log) {
	t.Helper()
	fx := newFixture(t, 200<<10+7)
	srv.Catalog = fx.open(t)
	addr, l := serve(t, srv)
	return fx, addr, l
}

func checkGot(t *testing.T, got, want []byte, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want the %d of the file", len(got), len(want))
	}
}

// A client asking for a window gets an OACK with its blksize, the tsize and the server's
// window (not the client's larger one, nor a timeout), and ACKs only every window's last
// block and the last one.
func TestWindowTransfer(t *testing.T) {
	fx, addr, l := windowServer(t, &Server{})
	c := &winClient{}
	got, oack, err := c.get(t, addr, "rootfs.aduimg", "blksize", "1468", "timeout", "5", "tsize", "0", "windowsize", "32")
	checkGot(t, got, fx.payload, err)
	want := map[string]string{"blksize": "1468", "tsize": strconv.Itoa(len(fx.payload)), "windowsize": "16"}
	if !mapsEqual(oack, want) {
		t.Errorf("OACK %v, want %v", oack, want)
	}
	blocks := len(fx.payload)/1468 + 1
	if len(c.acks) != 1+(blocks+15)/16 {
		t.Errorf("%d ACKs for %d blocks in windows of 16", len(c.acks), blocks)
	}
	if errs := l.endErrors(t, 1); errs[0] != nil {
		t.Errorf("transfer ended with %v", errs[0])
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Window 1, or a request without windowsize, is served lock-step by pin/tftp: no windowsize
// in the OACK, an ACK for every block.
func TestWindowNone(t *testing.T) {
	fx, addr, _ := windowServer(t, &Server{Window: 1})
	c := &winClient{}
	got, oack, err := c.get(t, addr, "rootfs.aduimg", "blksize", "1468", "windowsize", "16")
	checkGot(t, got, fx.payload, err)
	if _, ok := oack["windowsize"]; ok {
		t.Errorf("OACK %v offers a window", oack)
	}
	if blocks := len(fx.payload)/1468 + 1; len(c.acks) != 1+blocks {
		t.Errorf("%d ACKs for %d blocks", len(c.acks), blocks)
	}
}

// A block lost in the middle of a window: the client's nack (the ACK of the block before it)
// makes the server go back and send from the lost block on, at once: with a timeout of an
// hour, only the nack can finish the transfer.
func TestWindowNack(t *testing.T) {
	fx, addr, _ := windowServer(t, &Server{Timeout: time.Hour})
	c := &winClient{drop: func(b uint16, seen int) bool { return seen == 0 && (b == 5 || b == 17 || b == 40) }}
	got, _, err := c.get(t, addr, "rootfs.aduimg", "blksize", "1468", "windowsize", "16")
	checkGot(t, got, fx.payload, err)
}

// Lost ACKs or a whole lost window: the server sends the window again after its timeout.
func TestWindowTimeout(t *testing.T) {
	fx, addr, _ := windowServer(t, &Server{Timeout: 20 * time.Millisecond})
	c := &winClient{drop: func(b uint16, seen int) bool { return seen < 2 && b >= 17 && b <= 32 }}
	got, _, err := c.get(t, addr, "rootfs.aduimg", "blksize", "1468", "windowsize", "16")
	checkGot(t, got, fx.payload, err)
}

// A client gone silent: the transfer ends after Retries resends of the window.
func TestWindowNoAck(t *testing.T) {
	_, addr, l := windowServer(t, &Server{Timeout: 10 * time.Millisecond, Retries: 2})
	c := &winClient{drop: func(b uint16, seen int) bool { return b > 16 }}
	_, _, err := c.get(t, addr, "rootfs.aduimg", "blksize", "1468", "windowsize", "16")
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("block 17, sent 3 times")) {
		t.Errorf("client got %v", err)
	}
	if errs := l.endErrors(t, 1); !errors.Is(errs[0], ErrNoAck) {
		t.Errorf("transfer ended with %v, want ErrNoAck", errs[0])
	}
}

// Packets from another port than the client's (ACKs that would skip blocks, an ERROR) do not
// move or end the transfer.
func TestWindowWrongTID(t *testing.T) {
	fx, addr, _ := windowServer(t, &Server{})
	other, _ := loopbackUDP(t, addr)
	c := &winClient{onData: func(b uint16, server *net.UDPAddr) {
		if b%16 == 1 {
			other.WriteToUDP([]byte{0, opACK, 0, byte(b + 15)}, server)
			other.WriteToUDP([]byte{0, opACK, 0, byte(b + 31)}, server)
			other.WriteToUDP(append([]byte{0, opERROR, 0, 0}, "stop\x00"...), server)
		}
	}}
	got, _, err := c.get(t, addr, "rootfs.aduimg", "blksize", "1468", "windowsize", "16")
	checkGot(t, got, fx.payload, err)
}

// An ERROR from the client ends the transfer, with no answer.
func TestWindowClientError(t *testing.T) {
	_, addr, l := windowServer(t, &Server{})
	conn, to := loopbackUDP(t, addr)
	conn.WriteTo(rrq(opRRQ, "rootfs.aduimg", "octet", "windowsize", "4"), to)
	buf := make([]byte, 1000)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	conn.WriteToUDP(append([]byte{0, opERROR, 0, 0}, "no room\x00"...), from)
	var ce *clientError
	if errs := l.endErrors(t, 1); !errors.As(errs[0], &ce) || ce.msg != "no room" {
		t.Errorf("transfer ended with %v", errs[0])
	}
}

// Past block 65535 the numbers roll over to 0, 1… (as pin/tftp and U-Boot count).
func TestWindowRollover(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 32 MiB")
	}
	fx := newFixture(t, 4<<10)
	big := testpayload.Bytes(2, 65537*512+100)
	fx.write(t, "big.bin", big)
	addr, _ := serve(t, &Server{Catalog: fx.open(t), Window: 64})
	c := &winClient{drop: func(b uint16, seen int) bool { return seen == 0 && (b == 0 || b == 65535 || b == 3) }}
	got, _, err := c.get(t, addr, "big.bin", "windowsize", "64")
	checkGot(t, got, big, err)
}
