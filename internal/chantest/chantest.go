// Package chantest waits in tests for what another goroutine sends: a twin update, a
// request that reached a broker, the error a stopped loop returns.
package chantest

import (
	"testing"
	"time"
)

// Recv returns the next value from ch. The test fails (naming what it waited for) when no
// value comes within timeout or ch is closed.
func Recv[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("waiting for %s: the channel closed", what)
		}
		return v
	case <-time.After(timeout):
		t.Fatalf("no %s within %v", what, timeout)
	}
	var zero T
	return zero
}
