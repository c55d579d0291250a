package mtd

import "testing"

// TestPathsRoots: the zero Paths is the real /sys and /dev; a Dev root takes /dev/... paths
// of a config under it and leaves other paths alone.
func TestPathsRoots(t *testing.T) {
	for _, c := range []struct {
		p         Paths
		in, want  string
		wantSysfs string
	}{
		{Paths{}, "/dev/mtd0", "/dev/mtd0", "/sys"},
		{Paths{Sysfs: "/tmp/s", Dev: "/tmp/d"}, "/dev/mtd0", "/tmp/d/mtd0", "/tmp/s"},
		{Paths{Dev: "/tmp/d"}, "/var/env.bin", "/var/env.bin", "/sys"},
		{Paths{Dev: "/tmp/d"}, "/devices/x", "/devices/x", "/sys"},
	} {
		if got := c.p.DevPath(c.in); got != c.want {
			t.Errorf("%+v.DevPath(%q) = %q, want %q", c.p, c.in, got, c.want)
		}
		if got := c.p.SysfsRoot(); got != c.wantSysfs {
			t.Errorf("%+v.SysfsRoot() = %q, want %q", c.p, got, c.wantSysfs)
		}
	}
}
