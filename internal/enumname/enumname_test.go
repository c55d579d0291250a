package enumname

import "testing"

type color int

type level uint8

func TestName(t *testing.T) {
	names := []string{1: "red", 2: "green", 4: "blue"}
	for _, c := range []struct {
		v    color
		want string
	}{
		{1, "red"}, {2, "green"}, {4, "blue"},
		{0, "color(0)"}, {3, "color(3)"}, {5, "color(5)"}, {-1, "color(-1)"},
	} {
		if got := Name(c.v, "color", names); got != c.want {
			t.Errorf("Name(%d) = %q, want %q", int(c.v), got, c.want)
		}
	}
	if got := Name(level(200), "level", names); got != "level(200)" {
		t.Errorf("Name(level(200)) = %q", got)
	}
}
