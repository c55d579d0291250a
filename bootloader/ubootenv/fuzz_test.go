package ubootenv

import (
	"errors"
	"hash/crc32"
	"reflect"
	"testing"
)

func FuzzDecode(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00a=1\x00\x00"), false, false)
	f.Add([]byte("\x00\x00\x00\x00\x01a=1\x00b\x00=c\x00\x00\xff\xff"), true, true)
	f.Fuzz(func(t *testing.T, blob []byte, redundant, bigEndian bool) {
		fm := Format{Size: len(blob), Redundant: redundant, BigEndian: bigEndian}
		_, _ = Decode(blob, fm) // must not panic
		if fm.check() != nil {
			return
		}
		// fix the CRC so the parser itself is exercised
		fixed := append([]byte(nil), blob...)
		fm.order().PutUint32(fixed, crc32.ChecksumIEEE(fixed[fm.HeaderSize():]))
		b, err := Decode(fixed, fm)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// whatever decodes re-encodes and decodes to the same vars; the size is the same,
		// or one byte more for a full data area without its final NUL (Decode accepts the
		// end of the area as the terminator)
		again, err := Encode(b.Vars, fm, b.Flags)
		if errors.Is(err, ErrTooLarge) {
			fm.Size++
			again, err = Encode(b.Vars, fm, b.Flags)
		}
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		b2, err := Decode(again, fm)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if !reflect.DeepEqual(SortVars(b.Vars), b2.Vars) || b2.Flags != b.Flags {
			t.Fatalf("round trip: %v vs %v", b.Vars, b2.Vars)
		}
	})
}

func checkConfig(t *testing.T, c Config) {
	t.Helper()
	if len(c.Devices) < 1 || len(c.Devices) > 2 {
		t.Fatalf("%d devices", len(c.Devices))
	}
	for _, d := range c.Devices {
		if d.EnvSize <= 4 || d.EnvSize > maxEnvSize || d.Path == "" {
			t.Fatalf("bad device accepted: %+v", d)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("/dev/mtd0 0x40000 0x4000 0x20000 4\n/dev/mtd0 -0x80000 4000 20000 4 1\n"))
	f.Add([]byte("# c\n/dev/ubi0:env 0 0x4000\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("f", data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error without ErrConfig: %v", err)
			}
			return
		}
		checkConfig(t, c)
	})
}

func FuzzParseConfigYAML(f *testing.F) {
	f.Add([]byte(yamlSrc))
	f.Add([]byte("u:\n  size: 0x4000\n  devices:\n    - path: /a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := ParseConfigYAML("f", data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error without ErrConfig: %v", err)
			}
			return
		}
		for _, c := range cs {
			checkConfig(t, c)
		}
	})
}
