package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// gatherLogs reads the configured files and runs the commands, each cut to MaxFileSize and
// all of them to MaxTotalSize. A file that cannot be read or a command that fails is logged
// and left out (a failed command's output is kept).
func (a *Agent) gatherLogs(ctx context.Context, cfg Diagnostics) []logFile {
	var out []logFile
	total := int64(0)
	add := func(l logFile) {
		if total+int64(len(l.data)) > int64(cfg.MaxTotalSize) {
			a.log.Warn("log collection: max_total_size reached; log left out", "log", l.name, "size", len(l.data), "max_total_size", int64(cfg.MaxTotalSize))
			return
		}
		total += int64(len(l.data))
		out = append(out, l)
	}
	for _, p := range expandLogPaths(cfg.Files, a.log.Warn) {
		data, err := readTail(p, int64(cfg.MaxFileSize))
		if err != nil {
			a.log.Warn("log collection: file left out", "file", p, "err", err)
			continue
		}
		add(logFile{name: "files" + filepath.ToSlash(filepath.Clean(p)), data: data})
	}
	for _, n := range slices.Sorted(maps.Keys(cfg.Commands)) {
		add(logFile{name: "commands/" + n + ".txt", data: a.runLogCommand(ctx, n, cfg.Commands[n], cfg)})
	}
	return out
}

// expandLogPaths lists the files of the configured entries: a file as it is, a directory's
// newest regular files. Entries that do not exist are warned about and skipped.
func expandLogPaths(entries []string, warn func(string, ...any)) []string {
	var out []string
	for _, e := range entries {
		fi, err := os.Stat(e)
		if err != nil {
			warn("log collection: entry left out", "path", e, "err", err)
			continue
		}
		if !fi.IsDir() {
			out = append(out, e)
			continue
		}
		des, err := os.ReadDir(e)
		if err != nil {
			warn("log collection: directory left out", "path", e, "err", err)
			continue
		}
		type file struct {
			path string
			mod  time.Time
		}
		var files []file
		for _, de := range des {
			if info, err := de.Info(); err == nil && info.Mode().IsRegular() {
				files = append(files, file{filepath.Join(e, de.Name()), info.ModTime()})
			}
		}
		slices.SortFunc(files, func(x, y file) int { return y.mod.Compare(x.mod) })
		for i := 0; i < len(files) && i < maxDirFiles; i++ {
			out = append(out, files[i].path)
		}
	}
	return out
}

// readTail reads a file's last max bytes; a longer file gets a first line saying how many
// bytes were left out.
func readTail(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	var skipped int64
	if fi.Size() > max {
		skipped = fi.Size() - max
		if _, err := f.Seek(skipped, io.SeekStart); err != nil {
			return nil, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, err
	}
	return withTruncationNote(data, skipped), nil
}

// withTruncationNote puts "[aduagent: the first N bytes are left out …]" before a log that
// was cut.
func withTruncationNote(data []byte, skipped int64) []byte {
	if skipped <= 0 {
		return data
	}
	note := fmt.Sprintf("[aduagent: the first %d bytes are left out (agent.diagnostics.max_file_size)]\n", skipped)
	return append([]byte(note), data...)
}

// runLogCommand runs a command and returns the last MaxFileSize bytes of its output, with
// a last line naming a failure.
func (a *Agent) runLogCommand(ctx context.Context, name string, argv []string, cfg Diagnostics) []byte {
	cctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout)
	defer cancel()
	tail := &tailBuffer{max: int(cfg.MaxFileSize)}
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	data := withTruncationNote(tail.bytes(), tail.dropped)
	if err != nil {
		a.log.Warn("log collection: command failed", "command", name, "err", err)
		data = append(data, fmt.Sprintf("\n[aduagent: %s: %v]\n", strings.Join(argv, " "), err)...)
	}
	return data
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max     int
	buf     []byte
	dropped int64
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > t.max { // trim in batches: amortised copies
		t.dropped += int64(over)
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) bytes() []byte {
	if over := len(t.buf) - t.max; over > 0 {
		t.dropped += int64(over)
		t.buf = t.buf[over:]
	}
	return t.buf
}
