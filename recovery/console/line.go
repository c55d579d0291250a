package console

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
)

// What U-Boot's output can say went wrong. A step that fails wraps one of these in a
// *StepError, which names the step, the image and the line U-Boot printed.
var (
	// ErrTransfer: a TFTP transfer failed ("TFTP error: 'File not found' (1)", "Retry count
	// exceeded", "ARP Retry count exceeded", "TFTP server died", "*** ERROR: `serverip' not set").
	ErrTransfer = errkind.New(errkind.Environment, "console: TFTP transfer failed")
	// ErrCheck: what U-Boot computed over what it loaded is not what the workstation computed
	// (a crc32/hash mismatch, an expected value missing from a command's output, a transfer of
	// the wrong size): the image arrived damaged or is not the one the step names.
	ErrCheck = errkind.New(errkind.Input, "console: check failed")
	// ErrBadImage: U-Boot refused an image's format ("Bad Magic Number", "Bad Data CRC",
	// "Wrong Image Format").
	ErrBadImage = errkind.New(errkind.Input, "console: U-Boot refused the image")
	// ErrUnknownCommand: this U-Boot lacks a command the script uses ("Unknown command 'x' -
	// try 'help'"): the script does not fit the board.
	ErrUnknownCommand = errkind.New(errkind.Input, "console: U-Boot does not know the command")
	// ErrBadBlocks: NAND's bad blocks leave the image too little room in its partition
	// ("Size of write exceeds partition or device limit"): more went bad than the slot's
	// reserve, which the script counted against the image, absorbs.
	ErrBadBlocks = errkind.New(errkind.Environment, "console: bad blocks beyond the reserve")
	// ErrCommand: a command failed (a non-zero status, "ERROR", "## Error", "FAILED") in a
	// way none of the other errors describes.
	ErrCommand = errkind.New(errkind.Environment, "console: U-Boot command failed")
)

// LineKind is what one line of U-Boot output is about.
type LineKind uint8

const (
	// Plain: nothing this package acts on.
	Plain LineKind = iota
	// Failure: U-Boot reports an error (Line.Err tells which).
	Failure
	// Progress: TFTP's hash marks ("Loading: #####", "\t #####"); Line.Marks counts them.
	Progress
	// Transferred: "Bytes transferred = N (hex)"; Line.Bytes is N.
	Transferred
	// StepFailed: a step's own check failed: FailPrefix, the step and why. Whether that is
	// ErrCheck or ErrCommand is the step's (Step.Checks).
	StepFailed
)

// Line is what ParseLine found in one line of U-Boot output.
type Line struct {
	Kind  LineKind
	Err   error // for Failure: ErrTransfer, ErrCheck, ErrBadImage, ErrUnknownCommand, ErrBadBlocks or ErrCommand
	Marks int   // for Progress: hash marks on the line
	Bytes int64 // for Transferred: the byte count
}

// failures maps text U-Boot prints to the error it means, first match wins. The texts come
// from U-Boot's net/tftp.c, net/net.c, common/hash.c, cmd/, common/image*.c.
var failures = []struct {
	text string
	err  error
}{
	{"TFTP error", ErrTransfer},
	{"Retry count exceeded", ErrTransfer}, // also "ARP Retry count exceeded"
	{"TFTP server died", ErrTransfer},
	{"*** ERROR: `serverip' not set", ErrTransfer},
	{"*** ERROR: `ipaddr' not set", ErrTransfer},
	{"Unknown command '", ErrUnknownCommand},
	{"Bad Magic Number", ErrBadImage},
	{"Bad Data CRC", ErrBadImage},
	{"Bad Header Checksum", ErrBadImage},
	{"Wrong Image Format", ErrBadImage},
	{"** ERROR **", ErrCheck},                                         // hash -v / crc32 -v: "... ==> 1c291ca3 != 12345678 ** ERROR **"
	{"Size of write exceeds partition or device limit", ErrBadBlocks}, // nand write, bad blocks skipped
	{"## Error", ErrCommand},
	{"ERROR", ErrCommand}, // "0 blocks written: ERROR", "*** ERROR: ..."
	{"FAILED", ErrCommand},
}

var transferred = regexp.MustCompile(`^Bytes transferred = (\d+)`)

// ParseLine says what one line of U-Boot output (carriage returns and backspaces already
// applied) is about. It is a parser of bytes from the board: any input is fine.
func ParseLine(s string) Line {
	s = strings.TrimSpace(s)
	if s == "" {
		return Line{}
	}
	if m := transferred.FindStringSubmatch(s); m != nil {
		if n, err := strconv.ParseInt(m[1], 10, 64); err == nil {
			return Line{Kind: Transferred, Bytes: n}
		}
		return Line{Kind: Failure, Err: ErrTransfer}
	}
	if strings.HasPrefix(s, FailPrefix) {
		return Line{Kind: StepFailed}
	}
	if n, ok := marks(s); ok {
		return Line{Kind: Progress, Marks: n}
	}
	for _, f := range failures {
		if strings.Contains(s, f.text) {
			return Line{Kind: Failure, Err: f.err}
		}
	}
	return Line{}
}

// marks counts the hash marks of a TFTP progress line: "Loading: " and then only '#',
// 'T' (a timeout), '*' and blanks, or such a line alone (the continuation lines U-Boot
// starts with a tab). A line with no mark is progress only when it starts with "Loading:".
func marks(s string) (int, bool) {
	rest, loading := strings.CutPrefix(s, "Loading:")
	n := 0
	for _, r := range rest {
		switch r {
		case '#':
			n++
		case 'T', '*', ' ', '\t':
		default:
			return 0, false
		}
	}
	return n, loading || n > 0
}
