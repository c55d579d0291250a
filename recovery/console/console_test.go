package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/internal/syncbuf"
)

const banner = "\nU-Boot 2023.01\n\nDRAM:  256 MiB\nLoading Environment from MMC... *** Warning - bad CRC, using default environment\n\nNet:   eth0: virtio-net#32\n"

func fastOptions(log io.Writer) Options {
	return Options{PromptTimeout: 2 * time.Second, ProbeInterval: 20 * time.Millisecond, EchoTimeout: time.Second, CommandTimeout: 2 * time.Second, Log: log}
}

func attached(t *testing.T, start fakeStart) (*fakeUBoot, *Console, *syncbuf.Buffer) {
	t.Helper()
	f, port := newFake(t, banner, start)
	log := &syncbuf.Buffer{}
	c := New(port, "fake", fastOptions(log))
	t.Cleanup(c.Close)
	if err := c.Attach(context.Background()); err != nil {
		t.Fatalf("Attach: %v\nlog:\n%s", err, log)
	}
	return f, c, log
}

// Attach finds the prompt whether the board counts down to autoboot, shows its prompt, or
// sits at a prompt whose banner nobody saw (a console opened after power-on).
func TestAttach(t *testing.T) {
	for name, start := range map[string]fakeStart{"countdown": inCountdown, "prompt": promptShown, "banner missed": promptUnshown} {
		t.Run(name, func(t *testing.T) {
			f, c, log := attached(t, start)
			res, err := c.Run(context.Background(), "false", nil)
			if err != nil || res.Status != 1 {
				t.Fatalf("Run(false) = %+v, %v", res, err)
			}
			res, err = c.Run(context.Background(), "echo hello", nil)
			if err != nil || res.Status != 0 || !slices.Equal(res.Output, []string{"hello"}) {
				t.Fatalf("Run(echo hello) = %+v, %v", res, err)
			}
			if got := f.commandsRun(); !slices.Equal(got[len(got)-2:], []string{"false", "echo hello"}) {
				t.Errorf("the fake ran %q", got)
			}
			if !strings.Contains(log.String(), "=> echo hello; echo @@ADU") {
				t.Errorf("log lacks the echoed command:\n%s", log)
			}
		})
	}
}

// A console that never shows the prompt: a clear error naming the port and what it saw.
func TestAttachNoPrompt(t *testing.T) {
	for name, c := range map[string]struct {
		garbage, want string
	}{
		"garbage": {"\x00\xffStarting kernel ...\r\n", `last line: "\xff`},
		"silent":  {"", "nothing received"},
	} {
		t.Run(name, func(t *testing.T) {
			opts := fastOptions(nil)
			opts.PromptTimeout = 300 * time.Millisecond
			con := New(newSilent(t, c.garbage, 10*time.Millisecond), "/dev/ttyFAKE", opts)
			defer con.Close()
			err := con.Attach(context.Background())
			if !errors.Is(err, ErrNoPrompt) || errkind.Of(err) != errkind.Environment {
				t.Fatalf("Attach = %v, want ErrNoPrompt", err)
			}
			for _, want := range []string{"/dev/ttyFAKE", "300ms", c.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

// A character lost on the line: the command is not run (no Enter), ErrEcho.
func TestRunEchoLost(t *testing.T) {
	f, c, _ := attached(t, promptShown)
	f.mu.Lock()
	f.dropChar = f.typed + 3
	f.mu.Unlock()
	_, err := c.Run(context.Background(), "mmc write 0x40200000 0x1000 0x10", nil)
	if !errors.Is(err, ErrEcho) {
		t.Fatalf("Run = %v, want ErrEcho", err)
	}
	for _, l := range f.commandsRun() {
		if strings.Contains(l, "write") {
			t.Fatalf("the fake ran %q although its echo was wrong", l)
		}
	}
	// The console is usable again afterwards.
	if res, err := c.Run(context.Background(), "true", nil); err != nil || res.Status != 0 {
		t.Fatalf("Run(true) after the lost echo = %+v, %v", res, err)
	}
}

// Output of an earlier run (another token) or of this one (the echoed "$?") never ends a
// command early.
func TestRunMarkerNotSpoofed(t *testing.T) {
	f, c, _ := attached(t, promptShown)
	f.cmds["old"] = func([]string) ([]string, int) {
		return []string{"@@ADU00000000.2 0\n", "@@ADU" + c.token + ".99 0\n", "real output\n"}, 3
	}
	res, err := c.Run(context.Background(), "old", nil)
	if err != nil || res.Status != 3 || len(res.Output) != 3 {
		t.Fatalf("Run = %+v, %v; want status 3 after all three lines", res, err)
	}
}

func TestRunRefusesControlCharacters(t *testing.T) {
	_, c, _ := attached(t, promptShown)
	for _, cmd := range []string{"true\rmmc erase", "echo a\nreset", "x\x03"} {
		if _, err := c.Run(context.Background(), cmd, nil); !errors.Is(err, ErrBadCommand) {
			t.Errorf("Run(%q) = %v, want ErrBadCommand", cmd, err)
		}
	}
}

// A command that prints nothing for CommandTimeout: ErrTimeout, and Ctrl-C is sent.
func TestRunTimeout(t *testing.T) {
	f, c, _ := attached(t, promptShown)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.cmds["hang"] = func([]string) ([]string, int) { <-release; return nil, 0 }
	c.opts.CommandTimeout = 200 * time.Millisecond
	if _, err := c.Run(context.Background(), "hang", nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run = %v, want ErrTimeout", err)
	}
}

type meterLog struct {
	mu     sync.Mutex
	image  string
	total  int64
	adds   []int64
	sum    int64
	ended  bool
	endErr error
}

func (m *meterLog) Transfer(image string, size int64) Meter {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.image, m.total = image, size
	return m
}
func (m *meterLog) StepDone(Step, time.Duration, error) {}
func (m *meterLog) Add(n int64)                         { m.adds = append(m.adds, n); m.sum += n }
func (m *meterLog) End(err error)                       { m.ended, m.endErr = true, err }

// tftpboot prints hash marks as blocks arrive and the count at the end: the meter follows
// the marks and ends on the exact count.
func TestRunStepProgress(t *testing.T) {
	f, c, _ := attached(t, promptShown)
	const size = 3 << 20
	f.cmds["tftpboot"] = func([]string) ([]string, int) {
		out := []string{"Using virtio-net#32 device\n", "TFTP from server 10.0.2.2; our IP address is 10.0.2.15\n", "Loading: "}
		blocks := (size + blockSize - 1) / blockSize
		for b := 1; b <= blocks; b++ {
			if (b-1)%10 == 0 {
				out = append(out, "#")
			}
			if b%650 == 0 {
				out = append(out, "\n\t ")
			}
		}
		return append(out, "\n\t 5.4 MiB/s\ndone\n", fmt.Sprintf("Bytes transferred = %d (%x hex)\n", size, size)), 0
	}
	m := &meterLog{}
	s := Step{Name: "load", Image: "rootfs.img", Size: size, Commands: []Command{{Line: "tftpboot ${loadaddr} rootfs.img"}}}
	if err := c.RunStep(context.Background(), s, m); err != nil {
		t.Fatal(err)
	}
	if m.image != "rootfs.img" || m.total != size || m.sum != size || !m.ended || m.endErr != nil {
		t.Fatalf("meter: image %q total %d sum %d ended %v (%v)", m.image, m.total, m.sum, m.ended, m.endErr)
	}
	// The marks moved the bar before U-Boot's final count (one mark per ten 1468-byte blocks).
	if n := len(m.adds); n < 2 || m.sum-m.adds[n-1] < size*9/10 {
		t.Errorf("meter updates %v: the hash marks did not move it", m.adds)
	}

	// A transfer of another size than the image's is a failed check.
	s.Size = size + 1
	err := c.RunStep(context.Background(), s, nil)
	if !errors.Is(err, ErrCheck) || !strings.Contains(err.Error(), "rootfs.img") {
		t.Fatalf("RunStep with the wrong size = %v, want ErrCheck naming the image", err)
	}
}

// The first error U-Boot prints ends the step: the commands after it never run.
func TestRunStepStopsAtFirstError(t *testing.T) {
	for _, c := range []struct {
		name   string
		output []string
		status int
		expect []string
		want   error
		kind   errkind.Kind
	}{
		{"tftp file not found", []string{"Loading: *\b\n", "TFTP error: 'File not found' (1)\n", "Not retrying...\n"}, 1, nil, ErrTransfer, errkind.Environment},
		{"tftp timeout", []string{"Loading: T T T T T T T T T T \n", "Retry count exceeded; starting again\n"}, 1, nil, ErrTransfer, errkind.Environment},
		{"hash -v mismatch", []string{"crc32 for 40200000 ... 404fffff ==> 1c291ca3 != 12345678 ** ERROR **\n"}, 1, nil, ErrCheck, errkind.Input},
		{"expected crc missing", []string{"crc32 for 40200000 ... 404fffff ==> 1c291ca3\n"}, 0, []string{"==> 12345678"}, ErrCheck, errkind.Input},
		{"unknown command", []string{"Unknown command 'ubi' - try 'help'\n"}, 1, nil, ErrUnknownCommand, errkind.Input},
		{"mmc write error", []string{"\n", "MMC write: dev # 0, block # 32767, count 16 ... MMC: block number 0x800f exceeds max(0x8000)\n", "0 blocks written: ERROR\n"}, 1, nil, ErrCommand, errkind.Environment},
		{"silent failure", []string{"something\n"}, 1, nil, ErrCommand, errkind.Environment},
		{"error but status 0", []string{"## Error: \"fdt_addr_r\" not defined\n"}, 0, nil, ErrCommand, errkind.Environment},
		{"bad magic", []string{"## Booting kernel from Legacy Image at 40400000 ...\n", "Bad Magic Number\n"}, 1, nil, ErrBadImage, errkind.Input},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, con, _ := attached(t, promptShown)
			f.cmds["load"] = func([]string) ([]string, int) { return c.output, c.status }
			wrote := false
			f.cmds["write"] = func([]string) ([]string, int) { wrote = true; return nil, 0 }
			s := Step{Name: "load rootfs A", Image: "rootfs-a.img", Commands: []Command{{Line: "load", Expect: c.expect}, {Line: "write"}}}
			err := con.RunStep(context.Background(), s, nil)
			var se *StepError
			if !errors.Is(err, c.want) || !errors.As(err, &se) || se.Image != "rootfs-a.img" || se.Command != "load" {
				t.Fatalf("RunStep = %v, want a StepError wrapping %v on load", err, c.want)
			}
			if got := errkind.Of(err); got != c.kind {
				t.Errorf("kind %v, want %v", got, c.kind)
			}
			if !strings.Contains(err.Error(), `"load rootfs A" (image rootfs-a.img)`) {
				t.Errorf("error %q does not name the step and the image", err)
			}
			if wrote {
				t.Error("the command after the failure ran")
			}
		})
	}
}

// A step's own failure line (FailPrefix) ends it: a failed check of what the board received
// when the step checks (ErrCheck: exit 1), else a command that did not do its job; the line
// says what failed, so the error names no command.
func TestRunStepFailureLine(t *testing.T) {
	for _, c := range []struct {
		checks bool
		want   error
		kind   errkind.Kind
	}{{true, ErrCheck, errkind.Input}, {false, ErrCommand, errkind.Environment}} {
		f, con, _ := attached(t, promptShown)
		f.cmds["verdict"] = func([]string) ([]string, int) {
			return []string{FailPrefix + "check rootfs-a: rootfs.img differs from what the workstation serves (sha256); nothing written\n"}, 0
		}
		wrote := false
		f.cmds["write"] = func([]string) ([]string, int) { wrote = true; return nil, 0 }
		s := Step{Name: "check rootfs-a", Image: "rootfs.img", Checks: c.checks,
			Commands: []Command{{Line: "verdict", Expect: []string{DonePrefix + "check rootfs-a"}}, {Line: "write"}}}
		err := con.RunStep(context.Background(), s, nil)
		var se *StepError
		if !errors.Is(err, c.want) || errkind.Of(err) != c.kind || !errors.As(err, &se) || se.Command != "" || wrote {
			t.Fatalf("Checks %v: RunStep = %v (ran on: %v), want %v without a command", c.checks, err, wrote, c.want)
		}
		if want := `step "check rootfs-a" (image rootfs.img): console: `; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "differs from what the workstation serves") {
			t.Errorf("error %q", err)
		}
	}
}

// A command longer than MaxCommand is refused before anything is typed; one of MaxCommand
// bytes fits U-Boot's line with the marker, whatever its sequence number.
func TestRunLineLength(t *testing.T) {
	f, c, _ := attached(t, promptShown)
	long := "echo " + strings.Repeat("x", MaxCommand-len("echo "))
	c.seq = 999998 // the next marker has six digits, then the count starts again
	for range 3 {
		if _, err := c.Run(context.Background(), long, nil); err != nil {
			t.Fatalf("a command of MaxCommand bytes: %v", err)
		}
	}
	f.mu.Lock()
	typed := slices.Clone(f.ran[len(f.ran)-3:])
	f.mu.Unlock()
	if !strings.Contains(typed[0], ".999999 $?") || len(typed[0]) != MaxLine {
		t.Fatalf("typed %q (%d bytes), want a line of MaxLine with a six-digit marker", typed[0], len(typed[0]))
	}
	for _, l := range typed {
		if len(l) > MaxLine {
			t.Fatalf("typed %d bytes, more than MaxLine", len(l))
		}
	}
	if !strings.HasSuffix(typed[1], ".1 $?") {
		t.Fatalf("after 999999 the marker is %q, want 1", typed[1])
	}
	n := len(f.commandsRun())
	if _, err := c.Run(context.Background(), long+"x", nil); !errors.Is(err, ErrBadCommand) || len(f.commandsRun()) != n {
		t.Fatalf("a command of MaxCommand+1 bytes: %v", err)
	}
}

func TestBoot(t *testing.T) {
	for _, c := range []struct {
		name   string
		output []string
		hang   bool
		want   error
	}{
		{"up", []string{"resetting ...\n", banner, "Hit any key to stop autoboot:  0 \n", "booting bank A\n", "Starting kernel ...\n"}, false, nil},
		{"back at the prompt", []string{"resetting ...\n", banner, "** No partition table - mmc 0 **\n"}, false, ErrBootFailed},
		{"silent", []string{"resetting ...\n"}, true, ErrTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, con, _ := attached(t, promptShown)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			f.cmds["reset"] = func([]string) ([]string, int) {
				if c.hang {
					f.write(strings.Join(c.output, ""))
					<-release
				}
				return c.output, 0
			}
			err := con.Boot(context.Background(), "booting bank A", 2*time.Second)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Boot = %v, want %v", err, c.want)
			}
		})
	}
}

// Recover: network settings first, then the steps in order, then the reset.
func TestRecoverFake(t *testing.T) {
	f, port := newFake(t, banner, inCountdown)
	for _, name := range []string{"setenv", "tftpboot", "mmc"} {
		f.cmds[name] = func([]string) ([]string, int) { return nil, 0 }
	}
	f.cmds["reset"] = func([]string) ([]string, int) { return []string{"booting bank A\n"}, 0 }
	con := New(port, "fake", fastOptions(nil))
	defer con.Close()
	plan := Plan{
		Network: Network{IPAddr: "10.0.2.15", ServerIP: "10.0.2.2", Port: 6969, Window: 16},
		Steps:   []Step{{Name: "load", Commands: []Command{{Line: "tftpboot ${loadaddr} a.img"}}}, {Name: "write", Commands: []Command{{Line: "mmc write ${loadaddr} 0x1000 0x10"}}}},
		Up:      "booting bank A",
	}
	if err := Recover(context.Background(), con, plan, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"", "setenv ipaddr 10.0.2.15", "setenv serverip 10.0.2.2", "setenv tftpdstp 6969", "setenv tftpwindowsize 16",
		"tftpboot ${loadaddr} a.img", "mmc write ${loadaddr} 0x1000 0x10", "reset"}
	if got := f.commandsRun(); !slices.Equal(got, want) {
		t.Fatalf("ran\n%q\nwant\n%q", got, want)
	}
}

func TestPlanRefuses(t *testing.T) {
	for _, p := range []Plan{
		{Network: Network{IPAddr: "10.0.2.15; mmc erase", ServerIP: "10.0.2.2"}},
		{Network: Network{IPAddr: "dhcp", ServerIP: "::1"}},
		{Network: Network{IPAddr: "dhcp", ServerIP: "10.0.2.2", Port: 70000}},
		{Network: Network{IPAddr: "dhcp", ServerIP: "10.0.2.2", Window: -1}},
		{Network: Network{IPAddr: "dhcp", ServerIP: "10.0.2.2"}, Steps: []Step{{Name: "empty"}}},
	} {
		if _, err := p.Script(); !errors.Is(err, ErrPlan) {
			t.Errorf("Script(%+v) = %v, want ErrPlan", p, err)
		}
	}
}
