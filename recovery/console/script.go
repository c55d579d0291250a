package console

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
)

// ErrScript: a script file that cannot be read as steps.
var ErrScript = errkind.New(errkind.Input, "console: bad script")

// The script file: U-Boot commands, one a line, as typed at the prompt (and as `source`
// runs them: hush takes the directives below for comments), grouped into steps by
// directives in comments:
//
//	# step: load rootfs A
//	# image: rootfs-a.img 3145728
//	tftpboot ${loadaddr} rootfs-a.img
//	hash crc32 ${loadaddr} ${filesize}
//	# expect: ==> 1c291ca3
//	# step: write rootfs A
//	mmc write ${loadaddr} 0x1000 0x1800
//
// "# step: NAME" starts a step; "# image: FILE [SIZE]" names the file it loads (and its size
// in bytes); "# expect: TEXT" adds a value the command above must print; "#
// bad-block-reserve: N" sets how many bad blocks NAND may skip in the step (default 0;
// "none": no limit; U-Boot's own partition limit still holds). Commands before the
// first step form a step named "script". Other comments and blank lines are ignored.
const (
	dirStep    = "step:"
	dirImage   = "image:"
	dirExpect  = "expect:"
	dirReserve = "bad-block-reserve:"
)

// ParseScript reads a script file (see above) into steps.
func ParseScript(r io.Reader) ([]Step, error) {
	var steps []Step
	cur := func() *Step {
		if len(steps) == 0 {
			steps = append(steps, Step{Name: "script"})
		}
		return &steps[len(steps)-1]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrScript, n, fmt.Sprintf(format, args...))
		}
		if strings.IndexFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) >= 0 {
			return nil, fail("control character in %q", line)
		}
		text, comment := strings.CutPrefix(strings.TrimSpace(line), "#")
		if !comment {
			if line = strings.TrimSpace(line); line != "" {
				s := cur()
				s.Commands = append(s.Commands, Command{Line: line})
			}
			continue
		}
		text = strings.TrimSpace(text)
		switch {
		case strings.HasPrefix(text, dirStep):
			name := strings.TrimSpace(text[len(dirStep):])
			if name == "" {
				return nil, fail("a step without a name")
			}
			steps = append(steps, Step{Name: name})
		case strings.HasPrefix(text, dirImage):
			f := strings.Fields(text[len(dirImage):])
			if len(f) < 1 || len(f) > 2 {
				return nil, fail("want \"# image: FILE [SIZE]\", got %q", line)
			}
			s := cur()
			s.Image = f[0]
			if len(f) == 2 {
				size, err := strconv.ParseInt(f[1], 10, 64)
				if err != nil || size <= 0 {
					return nil, fail("image size %q is not a positive byte count", f[1])
				}
				s.Size = size
			}
		case strings.HasPrefix(text, dirExpect):
			want := strings.TrimSpace(text[len(dirExpect):])
			s := cur()
			if len(s.Commands) == 0 || want == "" {
				return nil, fail("\"# expect: TEXT\" must follow the command whose output holds TEXT")
			}
			c := &s.Commands[len(s.Commands)-1]
			c.Expect = append(c.Expect, want)
		case strings.HasPrefix(text, dirReserve):
			arg := strings.TrimSpace(text[len(dirReserve):])
			v, err := strconv.Atoi(arg)
			if arg == "none" {
				v, err = -1, nil
			} else if err != nil || v < 0 {
				return nil, fail("bad block reserve %q is not a count or \"none\"", arg)
			}
			cur().BadBlockReserve = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScript, err)
	}
	for _, s := range steps {
		if len(s.Commands) == 0 {
			return nil, fmt.Errorf("%w: step %q has no command", ErrScript, s.Name)
		}
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("%w: no command", ErrScript)
	}
	return steps, nil
}

// WriteScript writes steps in the script format, which ParseScript reads back.
func WriteScript(w io.Writer, steps []Step) error {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "# %s %s\n", dirStep, s.Name)
		if s.Image != "" {
			fmt.Fprintf(&b, "# %s %s", dirImage, s.Image)
			if s.Size > 0 {
				fmt.Fprintf(&b, " %d", s.Size)
			}
			b.WriteString("\n")
		}
		switch {
		case s.BadBlockReserve < 0:
			fmt.Fprintf(&b, "# %s none\n", dirReserve)
		case s.BadBlockReserve > 0:
			fmt.Fprintf(&b, "# %s %d\n", dirReserve, s.BadBlockReserve)
		}
		for _, c := range s.Commands {
			b.WriteString(c.Line + "\n")
			for _, e := range c.Expect {
				fmt.Fprintf(&b, "# %s %s\n", dirExpect, e)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
