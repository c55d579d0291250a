package tftpserve

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// BenchmarkServeLoopback: a lock-step client on loopback that acknowledges each block at
// once (512-byte blocks, as tftp-hpa's client), so the server's cost per block shows.
func BenchmarkServeLoopback(b *testing.B) {
	fx := newFixture(b, 8<<20)
	addr, _ := serve(b, &Server{Catalog: fx.open(b)})
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(fx.payload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := fetchRaw(b, to, "rootfs.aduimg"); n != int64(len(fx.payload)) {
			b.Fatalf("got %d bytes", n)
		}
	}
}

// fetchRaw reads name from the server at to with 512-byte blocks and returns its size.
func fetchRaw(b *testing.B, to *net.UDPAddr, name string) int64 {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDP(rrq(opRRQ, name, "octet"), to); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 600)
	ack := []byte{0, 4, 0, 0}
	var total int64
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			b.Fatal(err)
		}
		if binary.BigEndian.Uint16(buf) != 3 {
			b.Fatalf("packet %q", buf[:n])
		}
		copy(ack[2:], buf[2:4])
		if _, err := c.WriteToUDP(ack, from); err != nil {
			b.Fatal(err)
		}
		total += int64(n - 4)
		if n-4 < 512 {
			return total
		}
	}
}
