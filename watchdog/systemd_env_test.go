package watchdog

import (
	"errors"
	"testing"
	"time"
)

func envLookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseWatchdogEnv(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want time.Duration
		err  error
	}{
		{map[string]string{"WATCHDOG_USEC": "30000000"}, 30 * time.Second, nil},
		{map[string]string{"WATCHDOG_USEC": "1500", "WATCHDOG_PID": "42"}, 1500 * time.Microsecond, nil},
		{map[string]string{"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "43"}, 0, ErrWatchdogDisabled},
		{map[string]string{}, 0, ErrWatchdogDisabled},
		{map[string]string{"WATCHDOG_USEC": ""}, 0, ErrWatchdogDisabled},
		{map[string]string{"WATCHDOG_USEC": "0"}, 0, ErrInvalid},
		{map[string]string{"WATCHDOG_USEC": "-5"}, 0, ErrInvalid},
		{map[string]string{"WATCHDOG_USEC": "30s"}, 0, ErrInvalid},
		{map[string]string{"WATCHDOG_USEC": "18446744073709551615"}, 0, ErrInvalid},
		{map[string]string{"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "x"}, 0, ErrInvalid},
	}
	for _, tc := range cases {
		got, err := ParseWatchdogEnv(envLookup(tc.env), 42)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("%v: = %v, %v; want %v, %v", tc.env, got, err, tc.want, tc.err)
		}
	}
	if got := Interval(30 * time.Second); got != 15*time.Second {
		t.Errorf("Interval = %v", got)
	}
}

func TestSystemdFromEnv(t *testing.T) {
	if _, err := SystemdFromEnv(envLookup(nil), 1); !errors.Is(err, ErrNoNotifySocket) {
		t.Errorf("no socket: %v", err)
	}
	if _, err := SystemdFromEnv(envLookup(map[string]string{"NOTIFY_SOCKET": "vsock:2:1"}), 1); !errors.Is(err, ErrUnsupported) {
		t.Errorf("vsock: %v", err)
	}
	if _, err := SystemdFromEnv(envLookup(map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "bad"}), 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad usec: %v", err)
	}
	s, err := SystemdFromEnv(envLookup(map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify"}), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Timeout(); !errors.Is(err, ErrWatchdogDisabled) {
		t.Errorf("Timeout without watchdog: %v", err)
	}
	s, err = SystemdFromEnv(envLookup(map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "7"}), 7)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := s.Timeout(); d != 4*time.Second || err != nil {
		t.Errorf("Timeout = %v, %v", d, err)
	}
	if err := s.Notify("no-equals"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Notify(no-equals) = %v", err)
	}
	if err := s.Notify("A=1\nB=2"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Notify(newline) = %v", err)
	}
	if err := s.Close(CloseMode(9)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Close(9) = %v", err)
	}
}
