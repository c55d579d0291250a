package ubootqemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"time"
)

// Board is a U-Boot under QEMU whose console is a pseudo-terminal, opened by the program
// under test as it would open a board's serial line; with user networking, where the guest
// reaches the host's 127.0.0.1 as 10.0.2.2. Resets reboot the board (QEMU runs on); a
// poweroff ends QEMU.
type Board struct {
	// Console is the pty's path (/dev/pts/N).
	Console string
	cmd     *exec.Cmd
	done    chan struct{}
}

// StartBoard starts QEMU with cfg's U-Boot (RequireNet) and disk, the console on a pty and
// QEMU's user network (cfg.Network is implied; Timeout, Marker and Log do not apply). A
// reset reboots the board. Stop it with Stop; t.Cleanup is a good place.
func StartBoard(ctx context.Context, cfg Config) (*Board, error) {
	if cfg.UBoot == "" || cfg.Disk == "" {
		return nil, errors.New("ubootqemu: Config.UBoot and Config.Disk are required")
	}
	cfg.Network, cfg.ConsolePTY = true, true
	cmd := exec.CommandContext(ctx, QEMUBinary, Args(cfg)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ubootqemu: start %s: %w", QEMUBinary, err)
	}
	b := &Board{cmd: cmd, done: make(chan struct{})}
	pty, rest, err := findPTY(out)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	b.Console = pty
	go func() {
		io.Copy(io.Discard, rest)
		cmd.Wait()
		close(b.done)
	}()
	return b, nil
}

var ptyLine = regexp.MustCompile(`char device redirected to (/dev/pts/\d+)`)

// findPTY reads QEMU's output until it names the console's pty.
func findPTY(out io.Reader) (string, io.Reader, error) {
	br := bufio.NewReader(out)
	var seen []string
	for {
		line, err := br.ReadString('\n')
		if m := ptyLine.FindStringSubmatch(line); m != nil {
			return m[1], br, nil
		}
		seen = append(seen, line)
		if err != nil {
			return "", nil, fmt.Errorf("ubootqemu: QEMU named no console pty: %v: %q", err, seen)
		}
	}
}

// Done is closed when QEMU has exited (poweroff, Stop, or a failure).
func (b *Board) Done() <-chan struct{} { return b.done }

// Stop ends QEMU (if it still runs) and waits for it.
func (b *Board) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Kill()
	<-b.done
}
