package ubootscript

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMTDParts(t *testing.T) {
	got, err := ParseMTDParts("mtdparts=gpmi-nand:4m(boot)ro,0x100000@0x800000(kernel_a),1M(kernel_b),-(ubi);spi0.0:64k(spl)lk,512K@128k(mcu)")
	if err != nil {
		t.Fatal(err)
	}
	want := []MTDDevice{
		{ID: "gpmi-nand", Parts: []MTDPart{{"boot", 0, 4 << 20}, {"kernel_a", 8 << 20, 1 << 20}, {"kernel_b", 9 << 20, 1 << 20}, {"ubi", 10 << 20, -1}}},
		{ID: "spi0.0", Parts: []MTDPart{{"spl", 0, 64 << 10}, {"mcu", 128 << 10, 512 << 10}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseMTDParts = %+v\nwant %+v", got, want)
	}
	// Out of order but apart is fine.
	if _, err := ParseMTDParts("n:1m@2m(b),1m@0(a)"); err != nil {
		t.Fatalf("partitions listed out of order: %v", err)
	}
	for _, bad := range []struct{ in, msg string }{
		{"", "empty"},
		{"nand0", "want <mtd-id>:<partitions>"},
		{"n:1m(a),1m(a)", "used twice"},
		{"n:2m(a),1m@1m(b)", "overlaps"},
		{"n:-(a),1m(b)", "rest of the device"},
		{"n:1m", "want <size>"},
		{"n:1m()", "want <size>"},
		{"n:1x(a)", "bad size"},
		{"n:0(a)", "bad size"},
		{"n:1m@-1(a)", "bad offset"},
		{"n:1m(a)rw", "unknown flags"},
		{"n:1m(a);n:1m(b)", "defined twice"},
		{"n:1m@0x3fffffffffffffff(a)", "beyond any device"},
	} {
		if _, err := ParseMTDParts(bad.in); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("ParseMTDParts(%q) = %v, want an error naming %q", bad.in, err, bad.msg)
		}
	}
}

func TestParseMTDIDs(t *testing.T) {
	got, err := ParseMTDIDs("nand0=gpmi-nand,nor1=spi0.0")
	if err != nil {
		t.Fatal(err)
	}
	want := []MTDID{{"nand", 0, "gpmi-nand"}, {"nor", 1, "spi0.0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseMTDIDs = %+v", got)
	}
	for _, bad := range []string{"", "nand=x", "0=x", "nand0=", "disk0=x", "nand0=x,nand0=y", "nand0=x,nor0=x"} {
		if _, err := ParseMTDIDs(bad); err == nil {
			t.Errorf("ParseMTDIDs(%q) accepted", bad)
		}
	}
}

func FuzzParseMTDParts(f *testing.F) {
	f.Add("mtdparts=gpmi-nand:4m(boot)ro,0x100000@0x800000(kernel_a),1M(kernel_b),-(ubi);spi0.0:64k(spl)lk,512K@128k(mcu)")
	f.Fuzz(func(t *testing.T, s string) {
		devs, err := ParseMTDParts(s)
		if err != nil {
			return
		}
		for _, d := range devs {
			for i, p := range d.Parts {
				if p.Name == "" || p.Offset < 0 || p.Size == 0 || p.Size < -1 {
					t.Fatalf("%q: partition %+v", s, p)
				}
				for _, q := range d.Parts[:i] {
					if p.Offset < q.end() && q.Offset < p.end() {
						t.Fatalf("%q: %+v overlaps %+v", s, p, q)
					}
				}
			}
		}
	})
}

func FuzzParseMTDIDs(f *testing.F) {
	f.Add("nand0=gpmi-nand,nor1=spi0.0")
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := ParseMTDIDs(s)
		if err == nil && len(ids) == 0 {
			t.Fatalf("%q: no entries and no error", s)
		}
	})
}
