package bootloader

import (
	"errors"
	"maps"
	"testing"
)

// FuzzParseFloors checks that the adu_sec_floor value never panics the parser, that every
// error is ErrBadState, and that parsed floors print as a value that parses to the same floors.
func FuzzParseFloors(f *testing.F) {
	for _, s := range []string{"", "rootfs:7", "rootfs:7 mcu:3", " app:0\tapp:12 ", "mcu:0:9", "rootfs", ":5", "a:-1", "a:18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		fl, err := parseFloors(v)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("%q: unexpected error %v", v, err)
			}
			return
		}
		again, err := parseFloors(fl.String())
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", v, fl.String(), err)
		}
		maps.DeleteFunc(fl, func(_ string, n uint64) bool { return n == 0 })
		if !maps.Equal(fl, again) {
			t.Fatalf("%q: %v printed as %q, parsed back as %v", v, fl, fl.String(), again)
		}
	})
}
