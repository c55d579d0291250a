// Package grubenv reads and writes the GRUB environment block (the grubenv file that
// GRUB's load_env/save_env and grub-editenv use): a fixed-size file that starts with the
// signature "# GRUB Environment Block\n", holds "name=value\n" lines in which a backslash or
// a newline inside a value is preceded by a backslash, and is filled up to its size with '#'.
//
// Scope: the block format (Parse, Env.Encode), exactly as GRUB's grub-core/lib/envblk.c
// reads and edits it (set replaces a variable in place or appends it, unset removes its
// line, comment lines are kept), and an atomic file write (temporary file, fsync, rename,
// fsync of the directory). The block has no checksum and no second copy; power-loss safety
// comes from the rename, or from Mender's two env copies guarded by "editing" lock files
// (type Mender, compatible with mendersoftware/grub-mender-grubenv).
package grubenv

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
)

const (
	// Signature starts every environment block.
	Signature = "# GRUB Environment Block\n"
	// DefaultSize is the size grub-editenv creates a block with.
	DefaultSize = 1024
	// SectorSize is the unit the block size must be a multiple of: GRUB's save_env
	// overwrites the file's disk sectors in place and cannot change its size.
	SectorSize = 512
	// MaxSize bounds the block sizes this package accepts (GRUB's blocks are 1 KiB).
	MaxSize = 1 << 20
)

// Sentinel errors. Parse errors are returned as *ParseError, which unwraps to one of these.
var (
	// ErrSignature: the block does not start with Signature.
	ErrSignature = errkind.New(errkind.Input, "grubenv: block does not start with the GRUB environment block signature")
	// ErrSize: the block's size is not a positive multiple of 512 bytes (up to MaxSize).
	ErrSize = errkind.New(errkind.Input, "grubenv: block size is not a positive multiple of 512 bytes")
	// ErrBroken: the byte before the '#' padding is not a newline, or a variable's line
	// runs into the end of the block (what GRUB calls a broken block).
	ErrBroken = errkind.New(errkind.Input, "grubenv: broken block (no newline before the padding or at the end of a line)")
	// ErrSyntax: a line that is neither a comment nor name=value (no '=' before the newline).
	ErrSyntax = errkind.New(errkind.Input, "grubenv: line has no '=' before its newline")
	// ErrName: a variable name that GRUB could not read back (empty, or containing '=',
	// newline, backslash or NUL, or starting with '#').
	ErrName = errkind.New(errkind.Input, "grubenv: invalid variable name")
	// ErrValue: a value containing NUL, which GRUB's C strings cannot hold.
	ErrValue = errkind.New(errkind.Input, "grubenv: invalid variable value")
	// ErrTooLarge: the variables do not fit in the block's size.
	ErrTooLarge = errkind.New(errkind.Input, "grubenv: variables do not fit in the environment block")
)

// ParseError reports where in a block parsing failed. It unwraps to a sentinel error.
type ParseError struct {
	Offset int   // byte offset in the block
	Err    error // ErrSignature, ErrSize, ErrBroken or ErrSyntax
}

func (e *ParseError) Error() string { return fmt.Sprintf("%v (at offset %d)", e.Err, e.Offset) }

// Unwrap returns the sentinel error.
func (e *ParseError) Unwrap() error { return e.Err }

// Var is one variable of a block.
type Var struct {
	Name  string
	Value string
}

// line is a line of the block: a variable, or a comment kept verbatim (with its newline).
type line struct {
	comment string // raw comment line when isComment
	name    string
	value   string
	isComm  bool
}

// Env is an environment block in memory: its size and its lines in order. The zero value is
// not usable; use New or Parse.
type Env struct {
	size  int
	lines []line
}

// New returns an empty block of DefaultSize bytes (what upstream `grub-editenv create` writes).
func New() *Env { return &Env{size: DefaultSize} }

// NewSize returns an empty block of the given size, which must be a positive multiple of 512.
func NewSize(size int) (*Env, error) {
	if !validSize(size) {
		return nil, fmt.Errorf("%w: %d", ErrSize, size)
	}
	return &Env{size: size}, nil
}

func validSize(n int) bool { return n > 0 && n <= MaxSize && n%SectorSize == 0 }

// Size is the block size in bytes; Encode produces exactly this many bytes.
func (e *Env) Size() int { return e.size }

// Parse reads a block as GRUB does. It rejects a block whose size is not a multiple of
// 512, whose signature is wrong, that is broken (the byte before the trailing '#' run is not
// a newline, or a line runs into the end), or that has a non-comment line without '='.
// Backslash escapes in values are undone; comment lines (starting with '#') are kept so
// that Encode reproduces them. When a name occurs more than once all occurrences are kept
// (GRUB's load_env ends up with the last one; Get returns the last one too).
func Parse(b []byte) (*Env, error) {
	if !validSize(len(b)) {
		return nil, &ParseError{Offset: len(b), Err: ErrSize}
	}
	if !bytes.HasPrefix(b, []byte(Signature)) {
		off := 0
		for off < len(Signature) && b[off] == Signature[off] {
			off++
		}
		return nil, &ParseError{Offset: off, Err: ErrSignature}
	}
	// The '#' filler: GRUB's "first, look at free space" check.
	end := len(b)
	for end > 0 && b[end-1] == '#' {
		end--
	}
	if end < len(Signature) || b[end-1] != '\n' {
		return nil, &ParseError{Offset: end - 1, Err: ErrBroken}
	}
	e := &Env{size: len(b)}
	p := len(Signature)
	for p < end {
		start := p
		if b[p] == '#' {
			p = nextLine(b, p, end)
			if p > end {
				return nil, &ParseError{Offset: start, Err: ErrBroken}
			}
			e.lines = append(e.lines, line{isComm: true, comment: string(b[start:p])})
			continue
		}
		eq := -1
		for q := p; q < end && b[q] != '\n'; q++ {
			if b[q] == '=' {
				eq = q
				break
			}
		}
		if eq < 0 {
			return nil, &ParseError{Offset: start, Err: ErrSyntax}
		}
		var val []byte
		q := eq + 1
		for ; q < end && b[q] != '\n'; q++ {
			if b[q] == '\\' {
				q++
				if q >= end {
					break
				}
			}
			val = append(val, b[q])
		}
		if q >= end {
			return nil, &ParseError{Offset: start, Err: ErrBroken}
		}
		e.lines = append(e.lines, line{name: string(b[start:eq]), value: string(val)})
		p = q + 1
	}
	return e, nil
}

// nextLine returns the index after the newline that ends the line starting at p, skipping
// backslash-escaped bytes like GRUB's find_next_line; the result is > end when the line has
// no newline before end.
func nextLine(b []byte, p, end int) int {
	for p < end {
		switch b[p] {
		case '\\':
			p += 2
		case '\n':
			return p + 1
		default:
			p++
		}
	}
	return end + 1
}

// Vars returns the variables in block order (comment lines left out).
func (e *Env) Vars() []Var {
	var vs []Var
	for _, l := range e.lines {
		if !l.isComm {
			vs = append(vs, Var{Name: l.name, Value: l.value})
		}
	}
	return vs
}

// Get returns a variable's value (the last one if the name occurs more than once, which is
// the value GRUB's load_env ends up with).
func (e *Env) Get(name string) (string, bool) {
	for i := len(e.lines) - 1; i >= 0; i-- {
		if l := e.lines[i]; !l.isComm && l.name == name {
			return l.value, true
		}
	}
	return "", false
}

// CheckName reports whether GRUB can store and read back a variable name.
func CheckName(name string) error {
	if name == "" || strings.ContainsAny(name, "=\n\\\x00") || name[0] == '#' {
		return fmt.Errorf("%w: %q", ErrName, name)
	}
	return nil
}

// Set sets a variable like grub-editenv: an existing variable keeps its place (further
// duplicates of the name are removed), a new one is appended. Set fails if the block would
// no longer fit its size, leaving e unchanged.
func (e *Env) Set(name, value string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("%w: value of %q contains NUL", ErrValue, name)
	}
	lines := make([]line, 0, len(e.lines)+1)
	found := false
	for _, l := range e.lines {
		if !l.isComm && l.name == name {
			if found {
				continue
			}
			found = true
			l.value = value
		}
		lines = append(lines, l)
	}
	if !found {
		lines = append(lines, line{name: name, value: value})
	}
	if n := encodedLen(lines); n > e.size {
		return fmt.Errorf("%w: %d bytes needed, block is %d", ErrTooLarge, n, e.size)
	}
	e.lines = lines
	return nil
}

// Unset removes every occurrence of a variable; it reports whether there was one.
func (e *Env) Unset(name string) bool {
	lines := e.lines[:0:0]
	found := false
	for _, l := range e.lines {
		if !l.isComm && l.name == name {
			found = true
			continue
		}
		lines = append(lines, l)
	}
	e.lines = lines
	return found
}

func escapedLen(v string) int {
	return len(v) + strings.Count(v, "\\") + strings.Count(v, "\n")
}

func encodedLen(lines []line) int {
	n := len(Signature)
	for _, l := range lines {
		if l.isComm {
			n += len(l.comment)
		} else {
			n += len(l.name) + 1 + escapedLen(l.value) + 1
		}
	}
	return n
}

// Encode returns the block: signature, lines, '#' filler up to Size bytes. A block that is
// exactly full (no filler) is valid for GRUB.
func (e *Env) Encode() ([]byte, error) {
	if !validSize(e.size) {
		return nil, fmt.Errorf("%w: %d", ErrSize, e.size)
	}
	if n := encodedLen(e.lines); n > e.size {
		return nil, fmt.Errorf("%w: %d bytes needed, block is %d", ErrTooLarge, n, e.size)
	}
	b := make([]byte, 0, e.size)
	b = append(b, Signature...)
	for _, l := range e.lines {
		if l.isComm {
			b = append(b, l.comment...)
			continue
		}
		b = append(b, l.name...)
		b = append(b, '=')
		for i := 0; i < len(l.value); i++ {
			if c := l.value[i]; c == '\\' || c == '\n' {
				b = append(b, '\\')
			}
			b = append(b, l.value[i])
		}
		b = append(b, '\n')
	}
	for len(b) < e.size {
		b = append(b, '#')
	}
	return b, nil
}
