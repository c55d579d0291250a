package watchdog

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Feeder feeds a Device while the agent is healthy. Build it with NewFeeder and
// start it with Run.
type Feeder struct {
	dev      Device
	interval time.Duration
	healthy  func() bool
	clock    Clock

	disarmOnExit bool
	stallAfter   time.Duration

	mu       sync.Mutex
	lastBeat time.Time
	running  bool
}

// FeederOption configures a Feeder.
type FeederOption func(*Feeder)

// WithDisarmOnExit makes Run disarm and close the device (Close(CloseDisarm)) when
// ctx is done. Without it Run just stops feeding and leaves the device open and
// armed: the board resets unless something feeds it again.
func WithDisarmOnExit() FeederOption { return func(f *Feeder) { f.disarmOnExit = true } }

// WithStallTimeout enables stall detection: the agent's main loop must call Beat at
// least every d (Run counts from its start), or the Feeder stops feeding with
// ErrStalled. This catches a hang elsewhere in the agent while the feeding
// goroutine itself is still alive.
func WithStallTimeout(d time.Duration) FeederOption { return func(f *Feeder) { f.stallAfter = d } }

// NewFeeder returns a Feeder that calls dev.Keepalive every interval while healthy()
// returns true. clock nil means SystemClock. Invalid arguments are reported by Run.
func NewFeeder(dev Device, interval time.Duration, healthy func() bool, clock Clock, opts ...FeederOption) *Feeder {
	if clock == nil {
		clock = SystemClock{}
	}
	f := &Feeder{dev: dev, interval: interval, healthy: healthy, clock: clock}
	for _, o := range opts {
		if o != nil {
			o(f)
		}
	}
	return f
}

// Beat records that the agent's main loop is alive (see WithStallTimeout). It is
// safe to call from any goroutine.
func (f *Feeder) Beat() {
	now := f.clock.Now()
	f.mu.Lock()
	f.lastBeat = now
	f.mu.Unlock()
}

// Run feeds the device at once and then every interval, checking before each
// keepalive that ctx is not done, that healthy() returns true and that Beat was
// called recently enough. It returns:
//   - an error wrapping ErrUnhealthy or ErrStalled when it stopped feeding for that
//     reason; feeding never resumes and the device is left open and armed, so the
//     watchdog resets the board (do not close it with CloseDisarm);
//   - an error from Keepalive, wrapped, after which it does not feed either;
//   - nil when ctx is done, after disarming and closing the device if
//     WithDisarmOnExit was given (or that Close's error);
//   - ErrInvalid for a nil device or predicate, a non-positive interval, a negative
//     stall timeout, an interval not shorter than the device's timeout, or a concurrent Run.
//
// A healthy() that blocks blocks feeding too, which is the safe outcome of a hang.
func (f *Feeder) Run(ctx context.Context) error {
	if err := f.start(); err != nil {
		return err
	}
	defer f.stop()
	for {
		if ctx.Err() != nil {
			return f.exit()
		}
		if !f.healthy() {
			return fmt.Errorf("watchdog: health predicate false: %w", ErrUnhealthy)
		}
		if err := f.checkStall(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return f.exit()
		}
		if err := f.dev.Keepalive(); err != nil {
			return fmt.Errorf("watchdog: feeder: %w", err)
		}
		select {
		case <-ctx.Done():
			return f.exit()
		case <-f.clock.After(f.interval):
		}
	}
}

func (f *Feeder) start() error {
	switch {
	case f.dev == nil:
		return fmt.Errorf("watchdog: feeder without device: %w", ErrInvalid)
	case f.healthy == nil:
		return fmt.Errorf("watchdog: feeder without health predicate: %w", ErrInvalid)
	case f.interval <= 0:
		return fmt.Errorf("watchdog: feed interval %v: %w", f.interval, ErrInvalid)
	case f.stallAfter < 0:
		return fmt.Errorf("watchdog: stall timeout %v: %w", f.stallAfter, ErrInvalid)
	}
	if t, err := f.dev.Timeout(); err == nil && t > 0 && f.interval >= t {
		return fmt.Errorf("watchdog: feed interval %v not shorter than timeout %v: %w", f.interval, t, ErrInvalid)
	}
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		return fmt.Errorf("watchdog: feeder already running: %w", ErrInvalid)
	}
	f.running = true
	f.lastBeat = now
	return nil
}

func (f *Feeder) stop() {
	f.mu.Lock()
	f.running = false
	f.mu.Unlock()
}

func (f *Feeder) checkStall() error {
	if f.stallAfter == 0 {
		return nil
	}
	now := f.clock.Now()
	f.mu.Lock()
	since := now.Sub(f.lastBeat)
	f.mu.Unlock()
	if since > f.stallAfter {
		return fmt.Errorf("watchdog: no beat for %v (limit %v): %w", since, f.stallAfter, ErrStalled)
	}
	return nil
}

func (f *Feeder) exit() error {
	if !f.disarmOnExit {
		return nil
	}
	if err := f.dev.Close(CloseDisarm); err != nil {
		return fmt.Errorf("watchdog: disarm on exit: %w", err)
	}
	return nil
}
