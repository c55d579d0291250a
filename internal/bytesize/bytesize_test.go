package bytesize

import "testing"

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1": 1, "0x200": 512, " 3K ": 3072, "64KiB": 65536, "1MiB": 1 << 20, "2G": 2 << 30, "1 GiB": 1 << 30} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "1.5MiB", "12XB", "-1", "99999999999GiB"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): accepted", bad)
		}
	}
}

func TestUnmarshalTOML(t *testing.T) {
	var s Size
	if err := s.UnmarshalTOML(int64(4096)); err != nil || s != 4096 {
		t.Fatal(s, err)
	}
	if err := s.UnmarshalTOML("256KiB"); err != nil || s != 256<<10 {
		t.Fatal(s, err)
	}
	for _, bad := range []any{int64(-1), "lots", 1.5, true} {
		if err := s.UnmarshalTOML(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
