package exitcode

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/aduflash/aduflash/internal/errkind"
)

func TestOf(t *testing.T) {
	var (
		base        = errors.New("boom")
		verdict     = errkind.New(errkind.Input, "bad signature")
		unknownName = errkind.New(errkind.Usage, "unknown slot")
		medium      = errkind.New(errkind.Environment, "flash failed")
		stage       = errkind.New(errkind.Cause, "slot write failed")
		imported    = errkind.New(errkind.Exists, "update exists")
	)
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
		// What the packages say of their errors, when no command said more.
		{fmt.Errorf("ctx: %w", verdict), Invalid},
		{fmt.Errorf("ctx: %w", unknownName), Usage},
		{fmt.Errorf("%w: %w", verdict, medium), IO},
		{fmt.Errorf("%w: %w", verdict, fs.ErrNotExist), IO},
		{fmt.Errorf("%w: %w", stage, base), IO},
		{fmt.Errorf("%w: %w", stage, verdict), Invalid},
		{WithCode(IO, verdict), IO},
		{Usagef("bad flag: %w", verdict), Usage},
		{fmt.Errorf("ctx: %w", imported), Exists},
		{fmt.Errorf("%w: %w", verdict, imported), Exists},
		{fmt.Errorf("%w: %w", imported, medium), IO},
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
