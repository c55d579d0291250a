package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/cmd/internal/clitest"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/journal"
)

// run drives aduagent in-process the way main does.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	return clitest.Run(context.Background(), Run, "aduagent", args...)
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestProgram: run, install, status, mark-good, mark-bad; --version; --help goldens.
func TestProgram(t *testing.T) { clitest.Program(t, Run, New(io.Discard, io.Discard), 5) }

// fixture: two file slots per bank class, a single-copy U-Boot env in a file with its
// legacy fw_env.config, a kernel command line saying adu.slot=A, and the config.
type fixture struct {
	dir, cfg, env, cmdline, stateDir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d := t.TempDir()
	fx := &fixture{dir: d, cfg: filepath.Join(d, "aduagent.toml"), env: filepath.Join(d, "uboot.env"),
		cmdline: filepath.Join(d, "cmdline"), stateDir: filepath.Join(d, "state")}
	for _, n := range []string{"rootfs_a.img", "rootfs_b.img"} {
		mustWrite(t, filepath.Join(d, n), make([]byte, 1<<20))
	}
	blob, err := ubootenv.Encode([]ubootenv.Var{{Name: "adu_slot", Value: "A"}, {Name: "bootcmd", Value: "run adu_boot"}},
		ubootenv.Format{Size: 0x4000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, fx.env, append(blob, bytes.Repeat([]byte{0xff}, 0x4000)...))
	mustWrite(t, filepath.Join(d, "fw_env.config"), []byte("# device offset size\n"+fx.env+" 0x0 0x4000\n"))
	mustWrite(t, fx.cmdline, []byte("console=ttyS0 root=/dev/mmcblk0p2 adu.slot=A rootwait\n"))
	mustWrite(t, fx.cfg, []byte(`[slots]
banks = ["A", "B"]
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "file"
path = "`+filepath.Join(d, "rootfs_a.img")+`"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "file"
path = "`+filepath.Join(d, "rootfs_b.img")+`"
size = "2MiB"

[bootloader]
type = "u-boot"
preset = "aduflash"
env_config = "`+filepath.Join(d, "fw_env.config")+`"
lock_file = ""

[agent]
manufacturer = "contoso"
model = "toaster"
allow_raw = true
state_dir = "`+fx.stateDir+`"
`))
	return fx
}

func (fx *fixture) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return run(t, append([]string{"--config", fx.cfg, "--cmdline-file", fx.cmdline}, args...)...)
}

func (fx *fixture) backend(t *testing.T) bootloader.Backend {
	t.Helper()
	cfg, err := bootloader.LoadConfig(fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, cl, err := bootloader.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl() })
	return b
}

func (fx *fixture) envBytes(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(fx.env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func statusJSON(t *testing.T, fx *fixture) statusReport {
	t.Helper()
	code, out, errOut := fx.run(t, "status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d %s", code, errOut)
	}
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return r
}

func TestStatus(t *testing.T) {
	fx := newFixture(t)
	code, out, errOut := fx.run(t, "status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"active bank: A (from cmdline)",
		"bootloader:  u-boot, preset aduflash, banks A B",
		"primary:   A", "pending:   none", "bad:       none", "floors:    none",
		"rootfs-a  rootfs  A     file " + filepath.Join(fx.dir, "rootfs_a.img") + "  ?      active\n",
		"rootfs-b  rootfs  B     file " + filepath.Join(fx.dir, "rootfs_b.img") + "  2 MiB\n",
		"agent:       no journal yet (" + filepath.Join(fx.stateDir, "journal") + "): no deployment so far",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(fx.stateDir); err == nil {
		t.Error("status created the state dir")
	}

	r := statusJSON(t, fx)
	if r.Active != "A" || r.ActiveFrom != "cmdline" || r.Bootloader.State == nil || r.Bootloader.State.Primary != "A" ||
		r.Bootloader.State.Pending != "" || len(r.Slots) != 2 || !r.Slots[0].Active || r.Slots[1].Active ||
		r.Slots[0].Size != 0 || r.Slots[1].Size != 2<<20 || r.Journal == nil || r.Journal.Found {
		t.Errorf("status --json: %+v", r)
	}

	// A trial of B, written with the bootloader package directly.
	if err := fx.backend(t).MarkPending("B"); err != nil {
		t.Fatal(err)
	}
	_, out, _ = fx.run(t, "status")
	if !strings.Contains(out, "primary:   B") || !strings.Contains(out, "pending:   B, 3 attempt(s) left, then falls back to A") {
		t.Errorf("status after MarkPending B:\n%s", out)
	}
	r = statusJSON(t, fx)
	if st := r.Bootloader.State; st.Primary != "B" || st.Pending != "B" || st.AttemptsLeft != 3 || st.Fallback != "A" {
		t.Errorf("state: %+v", st)
	}

	// The anti-rollback floors the environment keeps.
	if err := fx.backend(t).(bootloader.FloorKeeper).RaiseFloors(bootloader.Floors{"rootfs": 7}); err != nil {
		t.Fatal(err)
	}
	if _, out, _ = fx.run(t, "status"); !strings.Contains(out, "floors:    rootfs:7 ") {
		t.Errorf("status after raising the floor:\n%s", out)
	}
	if r = statusJSON(t, fx); r.Bootloader.Floors["rootfs"] != 7 {
		t.Errorf("status --json floors: %v", r.Bootloader.Floors)
	}
}

func TestStatusUnknownActive(t *testing.T) {
	fx := newFixture(t)
	mustWrite(t, fx.cmdline, []byte("console=ttyS0 quiet\n"))
	code, out, _ := fx.run(t, "status")
	if code != 0 || !strings.Contains(out, "active bank: unknown (slots: cannot tell which bank is active") || strings.Contains(out, "active\n") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	r := statusJSON(t, fx)
	if r.Active != "unknown" || r.ActiveError == "" || r.Slots[0].Active {
		t.Errorf("%+v", r)
	}
	// And mark-* refuse without writing.
	before := fx.envBytes(t)
	for _, args := range [][]string{{"mark-good"}, {"mark-bad", "B"}} {
		code, _, errOut := fx.run(t, args...)
		if code != exitcode.IO || !strings.Contains(errOut, "cannot tell which bank is running") {
			t.Errorf("%v: exit %d %q", args, code, errOut)
		}
	}
	if !bytes.Equal(before, fx.envBytes(t)) {
		t.Error("env changed")
	}
}

func TestStatusJournal(t *testing.T) {
	fx := newFixture(t)
	j, err := journal.Open(fx.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	v2 := adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "2.0"}
	finished := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	rec := agent.Record{
		Version:        agent.StateVersion,
		Banks:          map[string]*agent.BankInfo{"A": {UpdateID: &v2, Versions: map[string]string{"rootfs": "2.0"}}},
		SecurityFloors: map[string]uint64{"rootfs": 3},
		Last: &agent.Outcome{UpdateID: adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "3.0"}, ResultCode: adu.ResultFailure,
			ExtendedResultCode: 0x30000001, Details: "health check app failed", Bank: "B", Finished: finished},
		Deployment: &agent.Deployment{UpdateID: adu.UpdateID{Provider: "local", Name: "rootfs", Version: "4.0"}, Local: true, Bank: "B", From: "A",
			Phase: agent.PhaseInstall, Started: finished.Add(time.Hour), Steps: []agent.StepState{{Class: "rootfs", Slot: "rootfs-b"}}},
	}
	if err := j.Save(rec); err != nil {
		t.Fatal(err)
	}
	code, out, _ := fx.run(t, "status")
	for _, want := range []string{
		"agent:       journal " + j.Path() + " (--json shows the whole record)\n",
		"  installed:      bank A: Contoso/Toaster 2.0 (rootfs 2.0)\n",
		"  in progress:    local install of local/rootfs 4.0 into bank B (from A), started 2025-03-04 06:06:07 UTC: writing, 0 of 1 file(s) written and verified\n",
		"  last:           FAILED: Contoso/Toaster 3.0 into bank B, 2025-03-04 05:06:07 UTC (result code 0, extended 30000001): health check app failed\n",
		"  security floor: rootfs:3 (lowest security counter accepted, by slot class)\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d; status lacks %q:\n%s", code, want, out)
		}
	}
	// A short summary, not the record.
	if n := strings.Count(out, "\n"); n > 20 || strings.Contains(out, "{") {
		t.Errorf("status is %d lines or shows JSON:\n%s", n, out)
	}
	r := statusJSON(t, fx)
	var got agent.Record
	if r.Journal == nil || !r.Journal.Found || json.Unmarshal(r.Journal.Record, &got) != nil || got.SecurityFloors["rootfs"] != 3 || got.Deployment == nil {
		t.Errorf("journal: %+v", r.Journal)
	}

	// Corrupt it: one payload byte flipped.
	b, _ := os.ReadFile(j.Path())
	b[len(b)-3] ^= 0x20
	mustWrite(t, j.Path(), b)
	code, out, _ = fx.run(t, "status")
	if code != 0 || !strings.Contains(out, "agent:       CORRUPT journal "+j.Path()+", record not trusted: ") {
		t.Errorf("corrupt: exit %d:\n%s", code, out)
	}
	r = statusJSON(t, fx)
	if !r.Journal.Corrupt || r.Journal.Error == "" || r.Journal.Record != nil {
		t.Errorf("corrupt journal: %+v", r.Journal)
	}
}

// Without state_dir the journal is in the default folder, as for the agent (status used to
// read state_dir with a parser of its own, which knew no default).
func TestStatusDefaultStateDir(t *testing.T) {
	fx := newFixture(t)
	b, _ := os.ReadFile(fx.cfg)
	mustWrite(t, fx.cfg, []byte(strings.Replace(string(b), `state_dir = "`+fx.stateDir+`"`, "", 1)))
	r := statusJSON(t, fx)
	if r.AgentError != "" || r.Journal == nil || r.Journal.StateDir != agent.DefaultStateDir {
		t.Errorf("status --json: agent error %q, journal %+v; want the journal in %s", r.AgentError, r.Journal, agent.DefaultStateDir)
	}
	if _, out, _ := fx.run(t, "status"); strings.Contains(out, "unknown") || !strings.Contains(out, agent.DefaultStateDir) {
		t.Errorf("status:\n%s", out)
	}
}

// An invalid [agent] section: everything else is shown, the agent's part says why it is
// missing, exit 1.
func TestStatusInvalidAgentSection(t *testing.T) {
	fx := newFixture(t)
	b, _ := os.ReadFile(fx.cfg)
	mustWrite(t, fx.cfg, []byte(strings.Replace(string(b), `model = "toaster"`, `model = "toaster"`+"\nbogus = 1", 1)))
	code, out, errOut := fx.run(t, "status")
	if code != exitcode.Invalid || !strings.Contains(out, "primary:   A") || !strings.Contains(out, "rootfs-b") ||
		!strings.Contains(out, "agent:       unknown (") || !strings.Contains(out, "bogus") || !strings.Contains(errOut, "bogus") {
		t.Errorf("exit %d:\n%s\n%s", code, out, errOut)
	}
	code, out, _ = fx.run(t, "status", "--json")
	var r statusReport
	if code != exitcode.Invalid || json.Unmarshal([]byte(out), &r) != nil || !strings.Contains(r.AgentError, "bogus") || r.Journal != nil || len(r.Slots) != 2 {
		t.Errorf("json: exit %d %s", code, out)
	}
}

func TestStatusBrokenEnv(t *testing.T) {
	fx := newFixture(t)
	mustWrite(t, fx.env, bytes.Repeat([]byte{0xff}, 0x8000))
	code, out, errOut := fx.run(t, "status")
	if code != exitcode.Invalid || !strings.Contains(out, "state:     unreadable:") || !strings.Contains(out, "rootfs-a") ||
		!strings.Contains(errOut, "no valid environment copy") {
		t.Errorf("exit %d:\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = fx.run(t, "status", "--json")
	var r statusReport
	if code != exitcode.Invalid || json.Unmarshal([]byte(out), &r) != nil || r.Bootloader.Error == "" || errOut != "" {
		t.Errorf("json: exit %d %q %q", code, out, errOut)
	}
}

func TestMarkGoodBad(t *testing.T) {
	fx := newFixture(t)
	// Healthy A, running A: mark-good is a no-op.
	before := fx.envBytes(t)
	for _, args := range [][]string{{"mark-good"}, {"mark-good", "A"}} {
		code, out, errOut := fx.run(t, args...)
		if code != 0 || !strings.Contains(out, "bank A marked good (bootloader state unchanged); running bank A") {
			t.Errorf("%v: exit %d %q %q", args, code, out, errOut)
		}
	}
	if !bytes.Equal(before, fx.envBytes(t)) {
		t.Error("mark-good of a healthy running bank wrote the env")
	}

	if err := fx.backend(t).MarkPending("B"); err != nil {
		t.Fatal(err)
	}
	before = fx.envBytes(t)
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"mark-good", "B"}, "refusing to confirm bank B: the running bank is A"},
		{[]string{"mark-bad", "A"}, "refusing to mark bank A bad: it is the running bank"},
	}
	for _, c := range cases {
		code, out, errOut := fx.run(t, c.args...)
		if code != exitcode.Invalid || !strings.Contains(errOut, c.msg) || out != "" {
			t.Errorf("%v: exit %d %q %q", c.args, code, out, errOut)
		}
		if !bytes.Equal(before, fx.envBytes(t)) {
			t.Fatalf("%v changed the env", c.args)
		}
	}
	// mark-good A while B is pending: the bootloader boots B, so it refuses (exit 1).
	code, _, errOut := fx.run(t, "mark-good")
	if code != exitcode.Invalid || !strings.Contains(errOut, "bank is not the primary bank") || !bytes.Equal(before, fx.envBytes(t)) {
		t.Errorf("mark-good A during B's trial: exit %d %q", code, errOut)
	}

	// mark-bad B cancels the trial.
	code, out, errOut := fx.run(t, "mark-bad", "B")
	if code != 0 || !strings.Contains(out, "bank B marked bad; running bank A") || !strings.Contains(out, "primary:   A") ||
		!strings.Contains(out, "pending:   none") || !strings.Contains(out, "bad:       B") {
		t.Errorf("mark-bad B: exit %d %q %q", code, out, errOut)
	}
	st, err := fx.backend(t).State()
	if err != nil || st.Primary != "A" || st.Pending != "" || !st.IsBad("B") {
		t.Errorf("state after mark-bad B: %+v %v", st, err)
	}
	// Again: already bad, exit 0, JSON.
	code, out, _ = fx.run(t, "mark-bad", "--json", "B")
	var res markResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.Unchanged || res.State == nil || !res.State.IsBad("B") {
		t.Errorf("mark-bad B again: exit %d %q", code, out)
	}
}

func TestMissingConfig(t *testing.T) {
	for _, args := range [][]string{{"status"}, {"mark-good"}, {"mark-bad", "B"}} {
		code, _, errOut := run(t, append([]string{"--config", filepath.Join(t.TempDir(), "nope.toml")}, args...)...)
		if code != exitcode.IO || !strings.Contains(errOut, "nope.toml") {
			t.Errorf("%v: exit %d %q", args, code, errOut)
		}
	}
}

func TestInvalidConfig(t *testing.T) {
	fx := newFixture(t)
	b, _ := os.ReadFile(fx.cfg)
	mustWrite(t, fx.cfg, []byte(strings.Replace(string(b), `preset = "aduflash"`, `preset = "aduflash"`+"\nbogus = 1", 1)))
	code, _, errOut := fx.run(t, "status")
	if code != exitcode.Invalid || !strings.Contains(errOut, "bogus") {
		t.Errorf("exit %d %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	fx := newFixture(t)
	for _, args := range [][]string{
		{},
		{"no-such-command"},
		{"status", "extra"},
		{"status", "--no-such-flag"},
		{"mark-bad"},
		{"mark-bad", "A", "B"},
		{"mark-good", "A", "B"},
		{"mark-bad", "C"},
		{"mark-good", "C"},
	} {
		before := fx.envBytes(t)
		code, _, errOut := fx.run(t, args...)
		if code != exitcode.Usage {
			t.Errorf("aduagent %q: exit %d, want %d (%s)", args, code, exitcode.Usage, errOut)
		}
		if !bytes.Equal(before, fx.envBytes(t)) {
			t.Errorf("aduagent %q changed the env", args)
		}
	}
}

// The global flags may follow the command name too (aduagent run --config F), and there
// they win over the ones before it.
func TestGlobalFlagsAfterCommand(t *testing.T) {
	fx := newFixture(t)
	before, out1, e1 := fx.run(t, "status", "--json")
	after, out2, e2 := run(t, "--config", "/nonexistent.toml", "status", "--config", fx.cfg, "--cmdline-file", fx.cmdline, "--json")
	if before != 0 || after != 0 || out1 != out2 {
		t.Fatalf("before: %d %s %s\nafter: %d %s %s", before, out1, e1, after, out2, e2)
	}
	if code, _, _ := run(t, "status", "--config", "/nonexistent.toml"); code != 3 {
		t.Errorf("a missing config named after the command: exit %d, want 3", code)
	}
}

// The [slots] section's cmdline_file names the kernel command line (a workstation, a
// container); --cmdline-file overrides it.
func TestCmdlineFileKey(t *testing.T) {
	fx := newFixture(t)
	other := filepath.Join(fx.dir, "cmdline-b")
	mustWrite(t, other, []byte("console=ttyS0 adu.slot=B\n"))
	b, _ := os.ReadFile(fx.cfg)
	mustWrite(t, fx.cfg, []byte(strings.Replace(string(b), "[slots]\n", "[slots]\ncmdline_file = \""+filepath.ToSlash(other)+"\"\n", 1)))
	if code, out, errOut := run(t, "--config", fx.cfg, "status"); code != 0 || !strings.Contains(out, "active bank: B (from cmdline)") {
		t.Errorf("cmdline_file: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := fx.run(t, "status"); code != 0 || !strings.Contains(out, "active bank: A (from cmdline)") {
		t.Errorf("--cmdline-file over cmdline_file: exit %d %q %q", code, out, errOut)
	}
}
