package app

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/lines"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/syncbuf"
)

// agentFixture is the status fixture with a real [agent] section, a trusted signing key and
// a signed image.
type agentFixture struct {
	*fixture
	pub     string
	key     crypto.Signer // trusted
	payload []byte
	img     string // rootfs 1.2.0, signed by key
}

// newAgentFixture builds the fixture; agentExtra are further [agent] keys.
func newAgentFixture(t *testing.T, agentExtra string) *agentFixture {
	t.Helper()
	fx := &agentFixture{fixture: newFixture(t)}
	var err error
	if fx.key, err = image.GenerateKey(image.Ed25519, rand.Reader); err != nil {
		t.Fatal(err)
	}
	fx.pub = filepath.Join(fx.dir, "release.pub.pem")
	b, _ := image.MarshalPublicKeyPEM(fx.key.Public())
	mustWrite(t, fx.pub, b)
	fx.payload = make([]byte, 700<<10+123)
	rand.Read(fx.payload)
	fx.img = fx.sign(t, fx.key, "rootfs-1.2.0.aduimg", image.SignOptions{Version: "1.2.0", SlotClass: "rootfs"})
	fx.setAgent(t, `manufacturer = "contoso"
model = "toaster"
compat_property_names = "manufacturer,model,hwrev"
state_dir = "`+filepath.ToSlash(fx.stateDir)+`"
pub = ["`+filepath.ToSlash(fx.pub)+`"]
reboot_command = ["false"]
`+agentExtra+`
[agent.properties]
hwrev = "2"
`)
	return fx
}

// setAgent replaces the config's [agent] section.
func (fx *agentFixture) setAgent(t *testing.T, body string) {
	t.Helper()
	b, err := os.ReadFile(fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "[agent]")
	if i < 0 {
		t.Fatal("fixture has no [agent] section")
	}
	mustWrite(t, fx.cfg, []byte(s[:i]+"[agent]\n"+body))
}

func (fx *agentFixture) sign(t *testing.T, key crypto.Signer, name string, opts image.SignOptions) string {
	t.Helper()
	path := filepath.Join(fx.dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts.ChunkSize = 64 << 10
	opts.Created = time.Unix(1e9, 0)
	if _, _, err := image.Sign(f, bytes.NewReader(fx.payload), int64(len(fx.payload)), key, opts); err != nil {
		t.Fatal(err)
	}
	return path
}

func (fx *agentFixture) slotB(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fx.dir, "rootfs_b.img"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// record reads the agent's journal record through aduagent status --json.
func (fx *agentFixture) record(t *testing.T) agent.Record {
	t.Helper()
	r := statusJSON(t, fx.fixture)
	var rec agent.Record
	if r.Journal == nil || !r.Journal.Found || json.Unmarshal(r.Journal.Record, &rec) != nil {
		t.Fatalf("status shows no journal record: %+v", r.Journal)
	}
	return rec
}

func TestInstallSigned(t *testing.T) {
	fx := newAgentFixture(t, "")
	code, out, errOut := fx.run(t, "install", "--no-reboot", fx.img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"installed file://" + filepath.ToSlash(fx.img) + "\n",
		"slot:    rootfs-b (class rootfs, bank B; running bank A)",
		"format:  aduimg, signed by key ",
		"version: 1.2.0",
		"bytes:   716923 written (file ",
		"bank B is pending: 3 attempt(s) left, then falls back to A; the next reboot boots it on trial",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// stderr has the progress of the write and the read-back (plain lines: not a terminal),
	// and nothing else.
	if !strings.Contains(errOut, "write: done, 700.1 KiB") || !strings.Contains(errOut, "verify: done, 700.1 KiB") {
		t.Errorf("no progress of both stages on stderr: %q", errOut)
	}
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if !strings.HasPrefix(l, "write: ") && !strings.HasPrefix(l, "verify: ") {
			t.Errorf("stderr: %q", l)
		}
	}
	if b := fx.slotB(t); !bytes.Equal(b[:len(fx.payload)], fx.payload) {
		t.Error("slot B does not hold the payload")
	}
	st, err := fx.backend(t).State()
	if err != nil || st.Primary != "B" || st.Pending != "B" || st.Fallback != "A" {
		t.Errorf("bootloader state %+v %v", st, err)
	}
	rec := fx.record(t)
	if d := rec.Deployment; d == nil || !d.Local || d.Phase != agent.PhasePending || !d.PendingMarked || d.Bank != "B" || d.From != "A" ||
		d.UpdateID.Version != "1.2.0" || len(d.Steps) != 1 || d.Steps[0].Slot != "rootfs-b" || !d.Steps[0].Progress.Done {
		t.Errorf("journal deployment: %+v", rec.Deployment)
	}
	_, out, _ = fx.run(t, "status")
	if !strings.Contains(out, "in progress:    local install of local/rootfs 1.2.0 into bank B (from A), started ") ||
		!strings.Contains(out, ": pending in the bootloader, waiting for the reboot into it\n") ||
		!strings.Contains(out, "pending:   B, 3 attempt(s) left, then falls back to A") {
		t.Errorf("status:\n%s", out)
	}

	// A second install while B is pending is refused, as JSON too.
	before := fx.envBytes(t)
	code, out, errOut = fx.run(t, "install", "--no-reboot", "--json", fx.img)
	var res installResult
	if code != exitcode.Invalid || json.Unmarshal([]byte(out), &res) != nil || res.OK || res.ExitCode != 1 ||
		!strings.Contains(res.Error, "pending a reboot") || errOut != "" {
		t.Errorf("second install: exit %d %q %q", code, out, errOut)
	}
	if !bytes.Equal(before, fx.envBytes(t)) {
		t.Error("the refused install changed the env")
	}
}

// install and status tell the same attempts: the bootloader's, after the bank was marked
// pending (here 5, the [bootloader] section's attempts).
func TestInstallTellsTheBootloaderAttempts(t *testing.T) {
	fx := newAgentFixture(t, "")
	b, _ := os.ReadFile(fx.cfg)
	mustWrite(t, fx.cfg, []byte(strings.Replace(string(b), `preset = "aduflash"`, `preset = "aduflash"`+"\nattempts = 5", 1)))
	code, out, errOut := fx.run(t, "install", "--no-reboot", fx.img)
	if code != 0 || !strings.Contains(out, "bank B is pending: 5 attempt(s) left, then falls back to A;") {
		t.Fatalf("install: exit %d %q %q", code, out, errOut)
	}
	if _, out, _ := fx.run(t, "status"); !strings.Contains(out, "pending:   B, 5 attempt(s) left, then falls back to A") {
		t.Errorf("status:\n%s", out)
	}
}

func TestInstallJSON(t *testing.T) {
	fx := newAgentFixture(t, "")
	fi, _ := os.Stat(fx.img)
	sum := sha256.New()
	b, _ := os.ReadFile(fx.img)
	sum.Write(b)
	code, out, errOut := fx.run(t, "install", "--no-reboot", "--json", "--class", "rootfs", "--sha256", hex.EncodeToString(sum.Sum(nil)), fx.img)
	var res installResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("exit %d %q %q", code, out, errOut)
	}
	if !res.OK || res.ExitCode != 0 || res.Slot != "rootfs-b" || res.Bank != "B" || res.From != "A" || res.Class != "rootfs" ||
		res.Format != agent.FormatAduimg || res.Version != "1.2.0" || res.Bytes != int64(len(fx.payload)) || res.Size != fi.Size() ||
		!res.Pending || res.Rebooting || res.KeyID == "" ||
		res.Bootloader == nil || res.Bootloader.Pending != "B" || res.Bootloader.AttemptsLeft != 3 || res.Bootloader.Fallback != "A" {
		t.Errorf("%+v", res)
	}
}

func TestInstallHTTP(t *testing.T) {
	fx := newAgentFixture(t, "")
	srv := httptest.NewServer(http.FileServer(http.Dir(fx.dir)))
	defer srv.Close()
	code, out, errOut := fx.run(t, "install", "--no-reboot", srv.URL+"/"+filepath.Base(fx.img))
	if code != 0 || !strings.Contains(out, "bank B is pending") {
		t.Fatalf("exit %d %q %q", code, out, errOut)
	}
	if b := fx.slotB(t); !bytes.Equal(b[:len(fx.payload)], fx.payload) {
		t.Error("slot B does not hold the payload")
	}
	// A URL that is not there: I/O error before anything is written.
	fx2 := newAgentFixture(t, "")
	code, _, errOut = fx2.run(t, "install", "--no-reboot", srv.URL+"/nope.aduimg")
	if code != exitcode.IO || !strings.Contains(errOut, "404") {
		t.Errorf("missing URL: exit %d %q", code, errOut)
	}
}

// TestInstallRefused: images the device must not take exit 1 and leave nothing pending.
func TestInstallRefused(t *testing.T) {
	fx := newAgentFixture(t, "")
	other, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	tampered := filepath.Join(fx.dir, "tampered.aduimg")
	b, _ := os.ReadFile(fx.img)
	b[len(b)-1000] ^= 0x01 // in the last chunk: the slot gets written up to there
	mustWrite(t, tampered, b)
	raw := filepath.Join(fx.dir, "raw.bin")
	mustWrite(t, raw, fx.payload)
	rawSum := sha256.Sum256(fx.payload)
	cases := []struct {
		name string
		args []string
		msg  string
	}{
		{"tampered", []string{tampered}, "chunk"},
		{"untrusted key", []string{fx.sign(t, other, "other.aduimg", image.SignOptions{Version: "1.2.0", SlotClass: "rootfs"})}, "key"},
		{"other class", []string{fx.sign(t, fx.key, "kernel.aduimg", image.SignOptions{Version: "1.2.0", SlotClass: "kernel"})}, "kernel"},
		{"no such class", []string{"--class", "kernel", fx.img}, "kernel"},
		{"incompatible", []string{fx.sign(t, fx.key, "incompat.aduimg", image.SignOptions{Version: "1.2.0", SlotClass: "rootfs",
			Compatibility: map[string]string{"model": "fridge"}})}, "fridge"},
		{"raw not allowed", []string{"--sha256", hex.EncodeToString(rawSum[:]), raw}, "raw"},
		{"wrong sha256", []string{"--sha256", strings.Repeat("ab", 32), fx.img}, "hash"},
	}
	before := fx.envBytes(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := fx.run(t, append([]string{"install", "--no-reboot"}, c.args...)...)
			if code != exitcode.Invalid || out != "" || !strings.Contains(strings.ToLower(errOut), c.msg) {
				t.Errorf("exit %d %q %q", code, out, errOut)
			}
			if !bytes.Equal(before, fx.envBytes(t)) {
				t.Fatal("the env changed")
			}
			st, err := fx.backend(t).State()
			if err != nil || st.Pending != "" || st.Primary != "A" {
				t.Errorf("state %+v %v", st, err)
			}
			if rec := fx.record(t); rec.Deployment != nil || rec.Last == nil || rec.Last.Succeeded || !rec.Last.Local {
				t.Errorf("journal: deployment %+v, last %+v", rec.Deployment, rec.Last)
			}
		})
	}
}

func TestInstallRawAllowed(t *testing.T) {
	fx := newAgentFixture(t, "allow_raw = true\n")
	raw := filepath.Join(fx.dir, "raw.bin")
	mustWrite(t, raw, fx.payload)
	code, _, errOut := fx.run(t, "install", "--no-reboot", raw)
	if code != exitcode.Invalid || !strings.Contains(errOut, "SHA-256") {
		t.Errorf("raw without --sha256: exit %d %q", code, errOut)
	}
	sum := sha256.Sum256(fx.payload)
	code, out, errOut := fx.run(t, "install", "--no-reboot", "--sha256", hex.EncodeToString(sum[:]), raw)
	if code != 0 || !strings.Contains(out, "format:  raw") {
		t.Fatalf("exit %d %q %q", code, out, errOut)
	}
	if b := fx.slotB(t); !bytes.Equal(b[:len(fx.payload)], fx.payload) {
		t.Error("slot B does not hold the payload")
	}
}

// rebootMarker makes the config's reboot command write the file whose path it returns (and
// skips the test without sh).
func (fx *agentFixture) rebootMarker(t *testing.T) string {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	marker := filepath.Join(fx.dir, "rebooted")
	b, _ := os.ReadFile(fx.cfg)
	mustWrite(t, fx.cfg, []byte(strings.Replace(string(b), `reboot_command = ["false"]`,
		`reboot_command = ["`+sh+`", "-c", "echo reboot > '`+marker+`'"]`, 1)))
	return marker
}

func TestInstallReboots(t *testing.T) {
	fx := newAgentFixture(t, "")
	marker := fx.rebootMarker(t)
	code, out, errOut := fx.run(t, "install", fx.img)
	if code != 0 || !strings.Contains(out, "bank B is pending: 3 attempt(s) left, then falls back to A; rebooting into it") {
		t.Fatalf("exit %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the reboot command did not run: %v", err)
	}

	// A reboot command that fails: the bank stays pending, exit 3 (reboot by hand).
	fx = newAgentFixture(t, "")
	code, _, errOut = fx.run(t, "install", fx.img)
	if code != exitcode.IO || !strings.Contains(errOut, "reboot command") {
		t.Errorf("failing reboot: exit %d %q", code, errOut)
	}
	if st, err := fx.backend(t).State(); err != nil || st.Pending != "B" {
		t.Errorf("state %+v %v", st, err)
	}
}

func TestInstallUsage(t *testing.T) {
	fx := newAgentFixture(t, "")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"install"}, exitcode.Usage},
		{[]string{"install", "a", "b"}, exitcode.Usage},
		{[]string{"install", "--sha256", "xyz", fx.img}, exitcode.Usage},
		{[]string{"install", "--size", "lots", fx.img}, exitcode.Usage},
		{[]string{"install", filepath.Join(fx.dir, "nope.aduimg")}, exitcode.IO},
		{[]string{"install", fx.dir}, exitcode.Usage},
	} {
		before := fx.envBytes(t)
		code, _, errOut := fx.run(t, c.args...)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (%s)", c.args, code, c.code, errOut)
		}
		if !bytes.Equal(before, fx.envBytes(t)) {
			t.Errorf("%q changed the env", c.args)
		}
	}
	// An [agent] section without keys is a config error.
	fx.setAgent(t, "manufacturer = \"m\"\nmodel = \"x\"\n")
	code, _, errOut := fx.run(t, "install", fx.img)
	if code != exitcode.Invalid || !strings.Contains(errOut, "agent.keyring") {
		t.Errorf("no keys: exit %d %q", code, errOut)
	}
}

// runCtx runs aduagent with a context, output buffers safe for the daemon's goroutines.
func runCtx(ctx context.Context, args ...string) (int, *syncbuf.Buffer, *syncbuf.Buffer) {
	var o, e syncbuf.Buffer
	code := Run(ctx, append([]string{"aduagent"}, args...), &o, &e)
	return code, &o, &e
}

// aduagent install --index --chunks fetches only what bank A lacks, and its progress says
// what it fetched and what it reused as it goes.
func TestInstallAdaptive(t *testing.T) {
	fx := newAgentFixture(t, "")
	held := bytes.Clone(fx.payload) // bank A: the payload with 8 KiB of it changed
	rand.Read(held[300<<10 : 308<<10])
	mustWrite(t, filepath.Join(fx.dir, "rootfs_a.img"), append(held, make([]byte, 1<<20-len(held))...))
	kr, err := image.NewKeyring(fx.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(fx.img)
	if err != nil {
		t.Fatal(err)
	}
	var store bytes.Buffer
	x, err := adaptive.IndexImage(bytes.NewReader(img), kr, adaptive.DefaultParams, &store, nil)
	if err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(fx.dir, "rootfs-1.2.0.aduidx")
	mustWrite(t, idx, x.Encode())
	mustWrite(t, filepath.Join(fx.dir, "rootfs-1.2.0.aduchunks"), store.Bytes())
	srv := httptest.NewServer(http.FileServer(http.Dir(fx.dir)))
	defer srv.Close()

	code, out, errOut := fx.run(t, "install", "--no-reboot", "--index", idx, "--chunks", srv.URL+"/rootfs-1.2.0.aduchunks",
		srv.URL+"/"+filepath.Base(fx.img))
	if code != 0 || !strings.Contains(out, "bank B is pending") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !bytes.Equal(fx.slotB(t)[:len(fx.payload)], fx.payload) {
		t.Fatal("slot B does not hold the payload")
	}
	m := regexp.MustCompile(`fetch: +(\d+) bytes fetched in \d+ requests \(file \d+\), (\d+) bytes reused from bank A \(found by cut\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no fetch line:\n%s", out)
	}
	fetched, _ := strconv.ParseInt(m[1], 10, 64)
	reused, _ := strconv.ParseInt(m[2], 10, 64)
	// Bank A lacks exactly the chunks that hold the changed 8 KiB (the payload is random,
	// so no other chunk matches them): those are fetched with the image's header, every
	// other byte is reused (the chunks after the change too, whose cuts in bank A moved).
	var lacked, lackedFrames int64
	for _, e := range x.Entries {
		if e.Offset < 308<<10 && e.Offset+int64(e.Size) > 300<<10 {
			lacked += int64(e.Size)
			lackedFrames += int64(e.FrameN)
		}
	}
	if fetched != lackedFrames+int64(len(img)-len(fx.payload)) || reused != int64(len(fx.payload))-lacked {
		t.Errorf("fetched %d and reused %d of a %d-byte payload; the chunks bank A lacks are %d bytes, %d as frames",
			fetched, reused, len(fx.payload), lacked, lackedFrames)
	}
	want := fmt.Sprintf("; fetched %s, reused %s\n", lines.Size(fetched), lines.Size(reused))
	if !strings.Contains(errOut, "write: done, ") || !strings.Contains(errOut, want) {
		t.Errorf("the write's progress does not end with %q:\n%s", want, errOut)
	}
}
