package watchdog

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/testwait"
)

func startFeeder(ctx context.Context, f *Feeder) <-chan error {
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	return done
}

func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	return testwait.Recv(t, done, 2*time.Second, "return of Run")
}

func TestFeederFeedsWhileHealthyThenStops(t *testing.T) {
	clk, dev := newFakeClock(), newFakeDevice(10*time.Second)
	var healthy atomic.Bool
	healthy.Store(true)
	f := NewFeeder(dev, time.Second, healthy.Load, clk)
	done := startFeeder(context.Background(), f)

	dev.waitFeed(t) // immediate first feed
	for i := 0; i < 5; i++ {
		clk.waitWaiters(t, 1)
		dev.noFeed(t)
		clk.Advance(999 * time.Millisecond)
		dev.noFeed(t)
		clk.Advance(time.Millisecond)
		dev.waitFeed(t)
	}
	healthy.Store(false)
	clk.waitWaiters(t, 1)
	clk.Advance(time.Second)
	err := waitDone(t, done)
	if !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("Run = %v, want ErrUnhealthy", err)
	}
	feeds, closed, _ := dev.state()
	if feeds != 6 || closed {
		t.Errorf("feeds=%d closed=%v; want 6 feeds and the device left open and armed", feeds, closed)
	}
	// Healthy again: a stopped feeder does not resume on its own.
	healthy.Store(true)
	clk.Advance(10 * time.Second)
	dev.noFeed(t)
}

func TestFeederUnhealthyFromStart(t *testing.T) {
	dev := newFakeDevice(0)
	err := NewFeeder(dev, time.Second, func() bool { return false }, newFakeClock()).Run(context.Background())
	if !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("Run = %v", err)
	}
	if feeds, _, _ := dev.state(); feeds != 0 {
		t.Errorf("fed %d times while unhealthy", feeds)
	}
}

func TestFeederStall(t *testing.T) {
	clk, dev := newFakeClock(), newFakeDevice(0)
	f := NewFeeder(dev, time.Second, func() bool { return true }, clk, WithStallTimeout(3*time.Second))
	done := startFeeder(context.Background(), f)
	dev.waitFeed(t)
	// Beats keep it going past the stall timeout.
	for i := 0; i < 6; i++ {
		clk.waitWaiters(t, 1)
		f.Beat()
		clk.Advance(time.Second)
		dev.waitFeed(t)
	}
	// No more beats (the last one was 1 s ago): feeds continue while at most 3 s
	// have passed since it, then stop.
	for i := 0; i < 2; i++ {
		clk.waitWaiters(t, 1)
		clk.Advance(time.Second)
		dev.waitFeed(t)
	}
	clk.waitWaiters(t, 1)
	clk.Advance(time.Second)
	if err := waitDone(t, done); !errors.Is(err, ErrStalled) {
		t.Fatalf("Run = %v, want ErrStalled", err)
	}
	dev.noFeed(t)
	if _, closed, _ := dev.state(); closed {
		t.Error("stalled feeder closed the device")
	}
}

func TestFeederContextDone(t *testing.T) {
	for _, disarm := range []bool{false, true} {
		clk, dev := newFakeClock(), newFakeDevice(0)
		var opts []FeederOption
		if disarm {
			opts = append(opts, WithDisarmOnExit())
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := startFeeder(ctx, NewFeeder(dev, time.Second, func() bool { return true }, clk, opts...))
		dev.waitFeed(t)
		clk.waitWaiters(t, 1)
		cancel()
		if err := waitDone(t, done); err != nil {
			t.Fatalf("disarm=%v: Run = %v", disarm, err)
		}
		clk.Advance(5 * time.Second)
		dev.noFeed(t)
		feeds, closed, mode := dev.state()
		if feeds != 1 || closed != disarm || (disarm && mode != CloseDisarm) {
			t.Errorf("disarm=%v: feeds=%d closed=%v mode=%v", disarm, feeds, closed, mode)
		}
	}
}

func TestFeederNoFeedAfterCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dev := newFakeDevice(0)
	if err := NewFeeder(dev, time.Second, func() bool { return true }, newFakeClock()).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if feeds, closed, _ := dev.state(); feeds != 0 || closed {
		t.Errorf("feeds=%d closed=%v", feeds, closed)
	}
}

func TestFeederKeepaliveError(t *testing.T) {
	dev := newFakeDevice(0)
	boom := errors.New("boom")
	dev.failFeed = boom
	err := NewFeeder(dev, time.Second, func() bool { return true }, newFakeClock()).Run(context.Background())
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v", err)
	}
}

func TestFeederInvalid(t *testing.T) {
	ok := func() bool { return true }
	clk := newFakeClock()
	cases := map[string]*Feeder{
		"nil device":        NewFeeder(nil, time.Second, ok, clk),
		"nil predicate":     NewFeeder(newFakeDevice(0), time.Second, nil, clk),
		"zero interval":     NewFeeder(newFakeDevice(0), 0, ok, clk),
		"interval>=timeout": NewFeeder(newFakeDevice(2*time.Second), 2*time.Second, ok, clk),
		"negative stall":    NewFeeder(newFakeDevice(0), time.Second, ok, clk, WithStallTimeout(-1)),
	}
	for name, f := range cases {
		if err := f.Run(context.Background()); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Run = %v, want ErrInvalid", name, err)
		}
	}

	// A second concurrent Run is refused.
	dev := newFakeDevice(0)
	f := NewFeeder(dev, time.Second, ok, clk)
	ctx, cancel := context.WithCancel(context.Background())
	done := startFeeder(ctx, f)
	dev.waitFeed(t)
	if err := f.Run(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("concurrent Run = %v", err)
	}
	cancel()
	if err := waitDone(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestInterval(t *testing.T) {
	if got := Interval(30 * time.Second); got != 15*time.Second {
		t.Errorf("Interval = %v", got)
	}
}
