package exitcode

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestOf(t *testing.T) {
	base := errors.New("boom")
	cases := []struct {
		err  error
		want int
	}{
		{nil, OK},
		{base, IO},
		{fs.ErrNotExist, IO},
		{InvalidInput(base), Invalid},
		{fmt.Errorf("ctx: %w", InvalidInput(base)), Invalid},
		{Usagef("bad flag %q", "x"), Usage},
		{WithCode(IO, InvalidInput(base)), IO},
	}
	for i, c := range cases {
		if got := Of(c.err); got != c.want {
			t.Errorf("case %d: Of(%v) = %d, want %d", i, c.err, got, c.want)
		}
	}
	if InvalidInput(nil) != nil {
		t.Error("InvalidInput(nil) must stay nil")
	}
	if !errors.Is(InvalidInput(base), base) {
		t.Error("wrapped error must unwrap to its cause")
	}
}
