// Package cnum reads numbers as the C tools whose files and flags we share read them
// (libubootenv's fw_env.config, U-Boot's mkenvimage): strtoll's base 0, and %lx hex.
package cnum

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseInt parses like C's strtoll(s, NULL, 0) (or sscanf's %lli) over a whole token: an
// optional sign, then 0x hex, leading-0 octal, or decimal.
func ParseInt(s string) (int64, error) {
	t := s
	neg := false
	if strings.HasPrefix(t, "-") || strings.HasPrefix(t, "+") {
		neg = t[0] == '-'
		t = t[1:]
	}
	base := 10
	switch {
	case hasHexPrefix(t):
		base, t = 16, t[2:]
	case len(t) > 1 && t[0] == '0':
		base, t = 8, t[1:]
	}
	v, err := parseDigits(t, base)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if neg {
		v = -v
	}
	return v, nil
}

// ParseHex parses like C's %lx: hexadecimal with an optional 0x prefix — also without the
// prefix, as in libubootenv and U-Boot's fw_env.c ("4000" means 0x4000).
func ParseHex(s string) (int64, error) {
	t := s
	if hasHexPrefix(t) {
		t = t[2:]
	}
	v, err := parseDigits(t, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a hexadecimal number", s)
	}
	return v, nil
}

func hasHexPrefix(t string) bool { return len(t) > 2 && (t[:2] == "0x" || t[:2] == "0X") }

// parseDigits parses bare digits in base: no sign, prefix or underscore (which strconv
// would take) is left to it.
func parseDigits(t string, base int) (int64, error) {
	if t == "" || strings.ContainsAny(t, "_+-") {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(t, base, 64)
}
