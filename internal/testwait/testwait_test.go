package testwait

import (
	"testing"
	"time"
)

// fatalT records a failure instead of failing the real test.
type fatalT struct {
	testing.TB
	failed bool
}

func (f *fatalT) Helper()               {}
func (f *fatalT) Fatalf(string, ...any) { f.failed = true }

// TestRecv: a sent value is returned; a silent or closed channel fails the test.
func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	f := &fatalT{}
	if got := Recv(f, ch, time.Second, "a number"); got != 7 || f.failed {
		t.Fatalf("Recv = %d, failed %v; want 7", got, f.failed)
	}
	f = &fatalT{}
	Recv(f, ch, 10*time.Millisecond, "a number")
	if !f.failed {
		t.Fatal("Recv on a silent channel did not fail")
	}
	close(ch)
	f = &fatalT{}
	Recv(f, ch, time.Second, "a number")
	if !f.failed {
		t.Fatal("Recv on a closed channel did not fail")
	}
}

// TestUntil: a condition that comes true ends the wait; one that never does fails the test.
func TestUntil(t *testing.T) {
	start := time.Now()
	f := &fatalT{}
	Until(f, time.Minute, "a moment", func() bool { return time.Since(start) > 20*time.Millisecond })
	if f.failed {
		t.Fatal("Until failed although the condition came true")
	}
	f = &fatalT{}
	Until(f, 20*time.Millisecond, "never", func() bool { return false })
	if !f.failed {
		t.Fatal("Until did not fail on a condition that never holds")
	}
}
