package mcusim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/aduflash/aduflash/internal/serial"
	"github.com/aduflash/aduflash/smp"
)

// ServeSerial answers SMP requests in the console framing on rw until ctx ends or rw fails.
// Lines are cut at Config.MaxLine; with Config.Baud both directions are paced like a UART.
// A reset drops the frame being received.
func (m *MCU) ServeSerial(ctx context.Context, rw io.ReadWriter) error {
	var r io.Reader = rw
	var w io.Writer = rw
	if m.cfg.Baud > 0 {
		byteTime := time.Second * 10 / time.Duration(m.cfg.Baud)
		r, w = &uart{r: rw, byteTime: byteTime}, &uart{w: rw, byteTime: byteTime}
	}
	stop := context.AfterFunc(ctx, func() {
		if c, ok := rw.(io.Closer); ok {
			c.Close()
		}
	})
	defer stop()
	br := bufio.NewReaderSize(r, 4096)
	var ra smp.Reassembler
	boots := m.Stats().Boots
	for {
		line, err := readLine(br, m.cfg.MaxLine)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("mcusim: serial line: %w", err)
		}
		if b := m.Stats().Boots; b != boots {
			ra, boots = smp.Reassembler{}, b // RAM is lost at a reset
		}
		pkt, _ := ra.Line(line)
		if pkt == nil {
			continue
		}
		out, after := m.handle(pkt)
		if out != nil {
			if _, err := w.Write(smp.AppendFrame(nil, out, m.cfg.LineSize)); err != nil {
				return fmt.Errorf("mcusim: serial line: %w", err)
			}
		}
		if after != nil {
			after()
		}
	}
}

// readLine reads one line, keeping at most max bytes of it (newline included) as a line
// buffer of that size does (max < 0: all).
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if max < 0 || len(line) < max {
			keep := len(chunk)
			if max >= 0 {
				keep = min(keep, max-len(line))
			}
			line = append(line, chunk[:keep]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return line, err
	}
}

// uart paces reads or writes at byteTime per byte, as a UART does. The pace is kept while
// bytes are pending, even when the simulator itself was scheduled late (a loaded machine):
// only a line that was idle starts a new schedule.
type uart struct {
	r        io.Reader
	w        io.Writer
	byteTime time.Duration
	next     time.Time // when the bytes passed so far have gone over the line
}

// uartChunk is how many bytes pass between two waits; a Read that blocks longer than
// uartIdle found the line idle.
const (
	uartChunk = 16
	uartIdle  = time.Millisecond
)

// pass waits until n more bytes have gone over the line; idle starts the schedule anew.
func (u *uart) pass(n int, idle bool) {
	if now := time.Now(); idle && now.After(u.next) {
		u.next = now
	}
	u.next = u.next.Add(time.Duration(n) * u.byteTime)
	time.Sleep(time.Until(u.next))
}

func (u *uart) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := u.r.Read(p[:min(len(p), uartChunk)])
	u.pass(n, time.Since(start) > uartIdle)
	return n, err
}

func (u *uart) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := u.w.Write(p[done:min(len(p), done+uartChunk)])
		u.pass(n, done == 0)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// ServeUDP answers SMP requests, one per datagram, on pc until ctx ends.
func (m *MCU) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	buf := make([]byte, smp.MaxPacket)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("mcusim: udp: %w", err)
		}
		out, after := m.handle(buf[:n])
		if out != nil {
			if _, err := pc.WriteTo(out, addr); err != nil && ctx.Err() == nil {
				return fmt.Errorf("mcusim: udp: %w", err)
			}
		}
		if after != nil {
			after()
		}
	}
}

// ServePTY serves the MCU on a new pseudo-terminal (Linux) until ctx ends and returns the
// path a client opens as the MCU's serial line, and a channel that yields ServeSerial's end.
func (m *MCU) ServePTY(ctx context.Context) (string, <-chan error, error) {
	p, err := serial.OpenPTY()
	if err != nil {
		return "", nil, fmt.Errorf("mcusim: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		err := m.ServeSerial(ctx, p.Master)
		p.Close()
		done <- err
	}()
	return p.Path, done, nil
}
