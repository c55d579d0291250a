// Package fastbootsim is a fastboot device on 127.0.0.1 that behaves as U-Boot 2023.01's
// `fastboot udp` does (net/fastboot.c, drivers/fastboot), for tests of fastboot clients
// without QEMU:
//
//   - 1024-byte packets, protocol version 1, the first expected sequence number 1; a query
//     is answered whatever its sequence number; a packet with the expected number is
//     processed and answered, one with the number before it gets the last answer again, any
//     other is ignored; an unknown packet id gets an error packet;
//   - a command packet is acknowledged empty and run on the next packet; init does not end a
//     pending command or a download;
//   - download:%08x answers DATA with the same digits (FAIL with them when larger than the
//     buffer); data packets are acknowledged empty, an empty packet once every byte came
//     gets OKAY, an empty or overlong one before that FAIL "Received invalid data length";
//   - flash:NAME writes the last complete download into the partition (FAIL "too large for
//     partition" when it does not fit), sending Config.InfoDuringFlash INFO packets first with
//     the sequence numbers of the packets to come, as U-Boot's progress callback does;
//   - getvar: version 0.4, max-download-size and partition-size:NAME as "0x…", Config.Vars,
//     else FAIL "Variable not implemented"; reboot answers OKAY, then the device is silent.
//
// Faults for the tests: Config.Drop loses packets on the way in, Config.Mangle rewrites or
// loses answers on the way out.
package fastbootsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/aduflash/aduflash/recovery/fastboot"
)

// PacketSize is U-Boot's packet size.
const PacketSize = 1024

// Config describes the device.
type Config struct {
	// MaxDownload is the download buffer's size (default 16 MiB).
	MaxDownload int
	// Partitions are the partitions by name, with their sizes; Device.Partition reads them.
	Partitions map[string]int
	// Vars are further getvar variables.
	Vars map[string]string
	// InfoDuringFlash is how many unsolicited INFO packets a flash sends before its answer.
	InfoDuringFlash int
	// Drop, if set, is asked for every packet that arrives (n counts from 0) whether it is
	// lost.
	Drop func(n int, pkt []byte) bool
	// Mangle, if set, rewrites every answer before it goes out (nil: it is lost); n counts
	// the answers from 0.
	Mangle func(n int, pkt []byte) []byte
}

// Device is a running simulated device.
type Device struct {
	cfg  Config
	conn *net.UDPConn
	done chan struct{}

	mu         sync.Mutex
	seq        uint16
	last       []byte
	pending    bool
	command    string
	inDownload bool
	expected   int
	received   int
	buf        []byte
	imageSize  int
	parts      map[string][]byte
	log        []string
	rebooted   bool
	in, out    int
}

// Start starts a device listening on a free UDP port of 127.0.0.1.
func Start(cfg Config) (*Device, error) {
	if cfg.MaxDownload <= 0 {
		cfg.MaxDownload = 16 << 20
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	d := &Device{cfg: cfg, conn: conn, done: make(chan struct{}), seq: 1, parts: map[string][]byte{}}
	for name, size := range cfg.Partitions {
		d.parts[name] = make([]byte, size)
	}
	go d.serve()
	return d, nil
}

// Addr is the device's address, "127.0.0.1:PORT".
func (d *Device) Addr() string { return d.conn.LocalAddr().String() }

// Close stops the device.
func (d *Device) Close() error {
	err := d.conn.Close()
	<-d.done
	return err
}

// Commands lists the commands the device ran, in order.
func (d *Device) Commands() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.log...)
}

// Partition returns a copy of a partition's bytes (nil for an unknown name).
func (d *Device) Partition(name string) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.parts[name]...)
}

// Rebooted tells whether the device took a reboot command.
func (d *Device) Rebooted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rebooted
}

// LeavePending makes the device hold cmd as a command whose run is due on the next packet,
// as U-Boot does when a host sent a command and went away.
func (d *Device) LeavePending(cmd string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending, d.command = true, cmd
}

func (d *Device) serve() {
	defer close(d.done)
	buf := make([]byte, 64<<10)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		for _, reply := range d.handle(buf[:n]) {
			d.conn.WriteToUDP(reply, from)
		}
	}
}

// handle processes one packet and returns what goes back.
func (d *Device) handle(pkt []byte) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.in
	d.in++
	if d.rebooted || (d.cfg.Drop != nil && d.cfg.Drop(n, pkt)) || len(pkt) < fastboot.HeaderSize || len(pkt) > PacketSize {
		return nil
	}
	h := fastboot.Header{ID: pkt[0], Seq: binary.BigEndian.Uint16(pkt[2:4])}
	data := pkt[fastboot.HeaderSize:]
	var out [][]byte
	switch {
	case h.ID == fastboot.IDQuery:
		out = append(out, d.answer(h, binary.BigEndian.AppendUint16(nil, d.seq)))
	case h.ID != fastboot.IDInit && h.ID != fastboot.IDFastboot:
		out = append(out, d.answer(fastboot.Header{ID: fastboot.IDError, Seq: h.Seq}, []byte("An error occurred.")))
	case h.Seq == d.seq:
		out = d.process(h, data)
		d.last = out[len(out)-1]
		d.seq++
	case h.Seq == d.seq-1 && d.last != nil:
		out = append(out, d.last)
	}
	return d.mangle(out)
}

func (d *Device) mangle(out [][]byte) [][]byte {
	if d.cfg.Mangle == nil {
		return out
	}
	var kept [][]byte
	for _, p := range out {
		if p = d.cfg.Mangle(d.out, append([]byte(nil), p...)); p != nil {
			kept = append(kept, p)
		}
		d.out++
	}
	return kept
}

func (d *Device) answer(h fastboot.Header, data []byte) []byte {
	return fastboot.AppendPacket(nil, h, data)
}

// process answers an init or fastboot packet with the expected sequence number; the INFO
// packets of a flash come before the answer, which then carries the sequence number after
// theirs.
func (d *Device) process(h fastboot.Header, data []byte) [][]byte {
	if h.ID == fastboot.IDInit {
		return [][]byte{d.answer(h, binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 1), PacketSize))}
	}
	var infos [][]byte
	var resp string
	switch {
	case d.inDownload:
		resp = d.download(data)
	case !d.pending:
		d.pending, d.command = true, string(data)
	default:
		d.pending = false
		resp, infos = d.run(d.command)
	}
	h.Seq = d.seq
	return append(infos, d.answer(h, []byte(resp)))
}

// download takes one data packet.
func (d *Device) download(data []byte) string {
	switch {
	case len(data) == 0 && d.received == d.expected:
		d.inDownload, d.imageSize = false, d.received
		return "OKAY"
	case len(data) == 0 || d.received+len(data) > d.expected:
		d.inDownload = false
		return "FAILReceived invalid data length"
	}
	copy(d.buf[d.received:], data)
	d.received += len(data)
	return ""
}

// run runs a command and returns its answer, after the INFO packets it sent.
func (d *Device) run(cmd string) (string, [][]byte) {
	d.log = append(d.log, cmd)
	name, arg, _ := strings.Cut(cmd, ":")
	switch name {
	case "getvar":
		return d.getvar(arg), nil
	case "download":
		n, err := strconv.ParseUint(arg, 16, 32)
		switch {
		case err != nil || n == 0:
			return "FAILExpected nonzero image size", nil
		case int(n) > d.cfg.MaxDownload:
			return "FAIL" + arg, nil
		}
		if len(d.buf) < int(n) {
			d.buf = append(d.buf, make([]byte, int(n)-len(d.buf))...)
		}
		d.inDownload, d.expected, d.received = true, int(n), 0
		return "DATA" + arg, nil
	case "flash":
		infos := d.infos()
		return d.flash(arg), infos
	case "reboot":
		d.rebooted = true
		return "OKAY", nil
	}
	return "FAILunrecognized command", nil
}

// infos sends U-Boot's progress INFO packets: each takes the next sequence number.
func (d *Device) infos() [][]byte {
	var out [][]byte
	for i := range d.cfg.InfoDuringFlash {
		out = append(out, d.answer(fastboot.Header{ID: fastboot.IDFastboot, Seq: d.seq}, fmt.Appendf(nil, "INFOwriting %d", i)))
		d.seq++
	}
	return out
}

func (d *Device) getvar(name string) string {
	if v, ok := d.cfg.Vars[name]; ok {
		return "OKAY" + v
	}
	v, arg, _ := strings.Cut(name, ":")
	switch v {
	case "version":
		return "OKAY0.4"
	case "max-download-size", "downloadsize":
		return fmt.Sprintf("OKAY0x%08x", d.cfg.MaxDownload)
	case "partition-size":
		p, ok := d.parts[arg]
		if !ok {
			return "FAILno such partition"
		}
		return fmt.Sprintf("OKAY0x%016x", len(p))
	}
	return "FAILVariable not implemented"
}

func (d *Device) flash(name string) string {
	p, ok := d.parts[name]
	switch {
	case !ok:
		return "FAILno such partition"
	case d.imageSize > len(p):
		return "FAILtoo large for partition"
	}
	copy(p, d.buf[:d.imageSize])
	return "OKAY"
}
