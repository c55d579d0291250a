package watchdog

import (
	"sync"
	"testing"
	"time"
)

// fakeClock only moves when Advance is called.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// waitWaiters blocks until n goroutines wait on the clock.
func (c *fakeClock) waitWaiters(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.waiters)
		c.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clock waiters = %d, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeDevice records what is done to it.
type fakeDevice struct {
	mu        sync.Mutex
	feeds     int
	timeout   time.Duration
	closed    bool
	closeMode CloseMode
	failFeed  error
	fed       chan struct{}
}

func newFakeDevice(timeout time.Duration) *fakeDevice {
	return &fakeDevice{timeout: timeout, fed: make(chan struct{}, 100)}
}

func (d *fakeDevice) Keepalive() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.failFeed != nil {
		return d.failFeed
	}
	d.feeds++
	d.fed <- struct{}{}
	return nil
}

func (d *fakeDevice) SetTimeout(t time.Duration) (time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.timeout = t.Round(time.Second)
	return d.timeout, nil
}

func (d *fakeDevice) Timeout() (time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timeout == 0 {
		return 0, ErrUnsupported
	}
	return d.timeout, nil
}

func (d *fakeDevice) Close(mode CloseMode) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.closed, d.closeMode = true, mode
	return nil
}

func (d *fakeDevice) state() (feeds int, closed bool, mode CloseMode) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.feeds, d.closed, d.closeMode
}

func (d *fakeDevice) waitFeed(t *testing.T) {
	t.Helper()
	select {
	case <-d.fed:
	case <-time.After(2 * time.Second):
		t.Fatal("no keepalive")
	}
}

// noFeed checks that no keepalive is pending right now.
func (d *fakeDevice) noFeed(t *testing.T) {
	t.Helper()
	select {
	case <-d.fed:
		t.Fatal("unexpected keepalive")
	default:
	}
}

var _ Device = (*fakeDevice)(nil)
var _ Device = (*Systemd)(nil)
