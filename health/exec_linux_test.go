package health

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gone reports whether pid no longer runs: absent from /proc, or a zombie waiting
// for a reaper (the container's init may not reap).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

func TestRealTimeoutKillsProcessGroup(t *testing.T) {
	needSh(t)
	dir := t.TempDir()
	shPid, sleepPid := filepath.Join(dir, "sh.pid"), filepath.Join(dir, "sleep.pid")
	// The child (sh) starts a grandchild (sleep 60) and waits for it.
	script := `echo $$ > "$SH_PID"; sleep 60 & echo $! > "$SLEEP_PID"; wait`
	start := time.Now()
	rep, err := Run(context.Background(), []Check{{
		Name: "tree", Command: []string{"/bin/sh", "-c", script},
		Env:     []string{"SH_PID=" + shPid, "SLEEP_PID=" + sleepPid},
		Timeout: 200 * time.Millisecond,
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		// Without the group kill the grandchild holds the pipe until WaitDelay.
		t.Errorf("Run took %v", el)
	}
	if r := rep.Results[0]; !r.TimedOut || rep.Healthy {
		t.Fatalf("report = %+v", rep)
	}
	pids := []int{readPid(t, shPid), readPid(t, sleepPid)}
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range pids {
		for !gone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still running after the timeout", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
