package errkind

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// typed is an error type matched through Is, as image.ChunkError is: it tells its kind itself.
type typed struct{}

func (typed) Error() string   { return "typed" }
func (typed) ErrorKind() Kind { return Input }

func TestOf(t *testing.T) {
	var (
		bad   = New(Input, "bad")
		name  = New(Usage, "unknown name")
		disk  = New(Environment, "disk")
		stage = New(Cause, "stage failed")
		dup   = New(Exists, "exists already")
		plain = errors.New("plain")
	)
	cases := []struct {
		name string
		err  error
		want Kind
	}{
		{"nil", nil, Unmarked},
		{"plain", plain, Unmarked},
		{"input", bad, Input},
		{"wrapped input", fmt.Errorf("ctx: %w", bad), Input},
		{"usage", name, Usage},
		{"environment", disk, Environment},
		{"typed", fmt.Errorf("ctx: %w", typed{}), Input},
		{"stage around plain", fmt.Errorf("%w: %w", stage, plain), Unmarked},
		{"stage around input", fmt.Errorf("%w: %w", stage, bad), Input},
		{"environment wins over input, either side", fmt.Errorf("%w: %w", bad, disk), Environment},
		{"environment inside input", fmt.Errorf("%w: %w", bad, fmt.Errorf("read: %w", disk)), Environment},
		{"input wins over usage", fmt.Errorf("%w: %w", bad, name), Input},
		{"input wins over usage, either side", errors.Join(name, bad), Input},
		{"environment wins over usage", errors.Join(name, disk), Environment},
		{"exists", fmt.Errorf("ctx: %w", dup), Exists},
		{"exists wins over input, either side", errors.Join(dup, bad), Exists},
		{"exists wins over input inside it", fmt.Errorf("%w: %w", bad, dup), Exists},
		{"environment wins over exists", fmt.Errorf("%w: %w", dup, disk), Environment},
		{"missing file", fmt.Errorf("%w: %w", bad, fs.ErrNotExist), Environment},
		{"permission", fs.ErrPermission, Environment},
		{"cancelled", fmt.Errorf("%w: %w", bad, context.Canceled), Environment},
		{"deadline", context.DeadlineExceeded, Environment},
	}
	for _, c := range cases {
		if got := Of(c.err); got != c.want {
			t.Errorf("%s: Of(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

func TestNew(t *testing.T) {
	err := New(Input, "aduimg: bad signature")
	if err.Error() != "aduimg: bad signature" || errors.Is(err, New(Input, "aduimg: bad signature")) {
		t.Fatalf("%v: a sentinel must keep its text and be distinct from another with the same text", err)
	}
	if Kind(9).String() != "Kind(9)" || Environment.String() != "environment" {
		t.Fatalf("String: %s, %s", Kind(9), Environment)
	}
}
