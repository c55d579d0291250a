package cnum

import (
	"strconv"
	"testing"
)

func TestParseInt(t *testing.T) {
	for s, want := range map[string]int64{
		"0": 0, "42": 42, "+42": 42, "-42": -42, "0x4000": 0x4000, "0X1f": 0x1f, "-0x10": -16,
		"010": 8, "0777": 0o777, "00": 0, "9223372036854775807": 1<<63 - 1,
	} {
		if got, err := ParseInt(s); err != nil || got != want {
			t.Errorf("ParseInt(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-", "+", "0x", "08", "1_000", "0x_1", "--1", "+-1", "1e3", "0b1", "0o7", " 1", "1 ", "9223372036854775808", "abc"} {
		if got, err := ParseInt(s); err == nil {
			t.Errorf("ParseInt(%q) = %d, want an error", s, got)
		}
	}
}

func TestParseHex(t *testing.T) {
	for s, want := range map[string]int64{"4000": 0x4000, "0x4000": 0x4000, "0X20000": 0x20000, "ff": 255, "0": 0, "010": 0x10} {
		if got, err := ParseHex(s); err != nil || got != want {
			t.Errorf("ParseHex(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0x", "-1", "+1", "0x-1", "g", "1_0", "0x1_0"} {
		if got, err := ParseHex(s); err == nil {
			t.Errorf("ParseHex(%q) = %d, want an error", s, got)
		}
	}
}

// FuzzParse: neither parser panics, and what ParseInt accepts Go's base 0 reads the same
// (Go takes more: underscores, 0o, 0b).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		ParseHex(s)
		v, err := ParseInt(s)
		if err != nil {
			return
		}
		if w, err := strconv.ParseInt(s, 0, 64); err != nil || w != v {
			t.Fatalf("ParseInt(%q) = %d, Go's base 0 says %d, %v", s, v, w, err)
		}
	})
}
