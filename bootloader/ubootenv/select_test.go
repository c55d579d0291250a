package ubootenv

import (
	"errors"
	"testing"
)

func TestSelect(t *testing.T) {
	v := func(f byte) CopyState { return CopyState{Valid: true, Flags: f} }
	bad := CopyState{}
	for _, tc := range []struct {
		name   string
		c1, c2 CopyState
		s      FlagScheme
		want   int
	}{
		{"serial only1", v(5), bad, FlagsSerial, 0},
		{"serial only2", bad, v(5), FlagsSerial, 1},
		{"serial 05/06", v(5), v(6), FlagsSerial, 1},
		{"serial 06/05", v(6), v(5), FlagsSerial, 0},
		{"serial ff/00 wrap", v(0xff), v(0), FlagsSerial, 1},
		{"serial 00/ff wrap", v(0), v(0xff), FlagsSerial, 0},
		{"serial 7f/80", v(0x7f), v(0x80), FlagsSerial, 1},
		{"serial equal", v(3), v(3), FlagsSerial, 0},
		{"serial 03/02", v(3), v(2), FlagsSerial, 0},
		{"serial fe/ff", v(0xfe), v(0xff), FlagsSerial, 1},
		{"bool 01/00", v(1), v(0), FlagsBoolean, 0},
		{"bool 00/01", v(0), v(1), FlagsBoolean, 1},
		{"bool 01/02", v(1), v(2), FlagsBoolean, 1},
		{"bool 03/02 trap", v(3), v(2), FlagsBoolean, 1},
		{"bool 02/01 trap", v(2), v(1), FlagsBoolean, 1},
		{"bool 01/01", v(1), v(1), FlagsBoolean, 0},
		{"bool ff/01", v(0xff), v(1), FlagsBoolean, 0},
		{"bool 01/ff", v(1), v(0xff), FlagsBoolean, 1},
		{"bool ff/ff", v(0xff), v(0xff), FlagsBoolean, 0},
		{"bool only2", bad, v(0), FlagsBoolean, 1},
	} {
		got, err := Select(tc.c1, tc.c2, tc.s)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if got, err := Select(bad, bad, FlagsSerial); got != -1 || !errors.Is(err, ErrNoValidCopy) {
		t.Errorf("both bad: %d %v", got, err)
	}
	if NextFlags(0xff, FlagsSerial) != 0 || NextFlags(4, FlagsSerial) != 5 || NextFlags(0, FlagsBoolean) != FlagActive {
		t.Error("NextFlags")
	}
}
