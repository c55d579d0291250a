package chantest

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
