package ubootqemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
)

// Machine is a U-Boot under QEMU that runs in the background (Start) while a test talks to
// it over the network, until it exits (a reset with Args' -no-reboot) or Stop.
type Machine struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	log    io.Writer
	exited chan struct{}

	mu      sync.Mutex
	console bytes.Buffer
	changed chan struct{} // closed at every console change
	err     error         // QEMU's exit, once exited is closed
}

// Start runs QEMU for cfg (Config.Marker and Config.Timeout are not used: WaitFor waits, ctx
// bounds the machine's life).
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	if cfg.UBoot == "" || cfg.Disk == "" {
		return nil, errors.New("ubootqemu: Config.UBoot and Config.Disk are required")
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Machine{cancel: cancel, log: cfg.Log, exited: make(chan struct{}), changed: make(chan struct{})}
	m.cmd = exec.CommandContext(ctx, QEMUBinary, Args(cfg)...)
	m.cmd.Stdout, m.cmd.Stderr = m, m
	if err := m.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("ubootqemu: start %s: %w", QEMUBinary, err)
	}
	go func() {
		err := m.cmd.Wait()
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
		close(m.exited)
	}()
	return m, nil
}

// Write takes QEMU's output: the console, carriage returns removed.
func (m *Machine) Write(p []byte) (int, error) {
	chunk := bytes.ReplaceAll(p, []byte("\r"), nil)
	if m.log != nil {
		m.log.Write(chunk)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.console.Write(chunk)
	close(m.changed)
	m.changed = make(chan struct{})
	return len(p), nil
}

// Console returns the console so far.
func (m *Machine) Console() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.console.String()
}

// WaitFor returns once the console holds marker; an error when QEMU exits before or ctx
// ends.
func (m *Machine) WaitFor(ctx context.Context, marker string) error {
	for {
		m.mu.Lock()
		found, changed := strings.Contains(m.console.String(), marker), m.changed
		m.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-changed:
		case <-m.exited:
			if strings.Contains(m.Console(), marker) {
				return nil
			}
			return fmt.Errorf("ubootqemu: QEMU exited (%v) before %q appeared", m.exitErr(), marker)
		case <-ctx.Done():
			return fmt.Errorf("ubootqemu: waiting for %q: %w", marker, ctx.Err())
		}
	}
}

// Wait waits until QEMU exits (or ctx ends) and returns its exit error.
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-m.exited:
		return m.exitErr()
	case <-ctx.Done():
		return fmt.Errorf("ubootqemu: waiting for QEMU to exit: %w", ctx.Err())
	}
}

// Stop kills QEMU (if it still runs) and waits for it.
func (m *Machine) Stop() {
	m.cancel()
	<-m.exited
}

func (m *Machine) exitErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}
