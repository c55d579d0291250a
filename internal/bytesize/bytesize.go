// Package bytesize reads byte counts as people write them in configs and on command lines:
// "4096", "0x20000", "256KiB", "64MiB", "1GiB" (K, M and G are binary too).
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse parses a byte count; negative values and overflows are refused.
func Parse(str string) (int64, error) {
	s := strings.TrimSpace(str)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want e.g. 4096, 0x20000 or 64MiB)", str)
	}
	return n * mult, nil
}

// Size is a byte count that a TOML config may write as an integer or as a string Parse reads.
type Size int64

// UnmarshalTOML implements BurntSushi/toml's Unmarshaler.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("negative size %d", x)
		}
		*s = Size(x)
		return nil
	case string:
		n, err := Parse(x)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	}
	return fmt.Errorf("size must be an integer or a string like \"64MiB\", not %T", v)
}
