// Package testwait waits in tests for what other goroutines do: a value they send (a twin
// update, the error a stopped loop returns), or a condition that comes true.
package testwait

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

// Until waits until cond holds, checking it every few milliseconds. The test fails, naming
// what it waited for, when cond does not hold within timeout.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
