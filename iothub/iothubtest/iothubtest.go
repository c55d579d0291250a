// Package iothubtest is what the tests that play a device against a hub share: a Client
// dialed for the length of a test, and the next desired-property update it receives.
package iothubtest

import (
	"context"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/testwait"
	"github.com/aduflash/aduflash/iothub"
)

// Timeout bounds the dial and the wait for an update.
const Timeout = 10 * time.Second

// Dial connects a Client with cfg and closes it when the test ends.
func Dial(t testing.TB, cfg iothub.Config) *iothub.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	c, err := iothub.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// NextDesired returns the next desired-property update c receives; the test fails when
// none comes within Timeout or the channel closes.
func NextDesired(t testing.TB, c *iothub.Client) iothub.DesiredUpdate {
	t.Helper()
	return testwait.Recv(t, c.Desired(), Timeout, "desired-property update")
}
