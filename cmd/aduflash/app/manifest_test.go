package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
)

const aduTestdata = "../../../adu/testdata/"

func TestManifestVerify(t *testing.T) {
	m, s, testRoots := aduTestdata+"manifest_v4.json", aduTestdata+"manifest_v4.sig.jws", aduTestdata+"rootkeys_test.json"
	code, out, errOut := run(t, "manifest", "verify", "--manifest", m, "--signature", s)
	if code != 0 || !strings.Contains(out, "VERIFIED") || !strings.Contains(out, "ADU.200702.R (built-in)") ||
		!strings.Contains(out, "ADU.210609.R.S") || !strings.Contains(out, "ESPRESSIF/ESP32-Azure-IoT-Kit 1.1 (manifest v4, 1 step, 1 file)") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, "manifest", "verify", "--manifest", m, "--signature", s, "--root-keys", testRoots, "--json")
	var v manifestVerdict
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || !v.OK || v.RootKID != "ADU.200702.R" || v.RootSource != "built-in" || v.SigningKID != "ADU.210609.R.S" {
		t.Fatalf("exit %d %+v %v", code, v, err)
	}

	d := t.TempDir()
	data, _ := os.ReadFile(m)
	sig, _ := os.ReadFile(s)
	bad := filepath.Join(d, "bad.json")
	mustWrite(t, bad, []byte(strings.Replace(string(data), `"1.1"`, `"9.9"`, 1)))
	code, _, errOut = run(t, "manifest", "verify", "--manifest", bad, "--signature", s)
	if code != exitcode.Invalid || !strings.Contains(errOut, "NOT VERIFIED") || !strings.Contains(errOut, "manifest hash") || !strings.Contains(errOut, "ADU.210609.R.S") {
		t.Errorf("changed manifest: exit %d %s", code, errOut)
	}
	nl := filepath.Join(d, "nl.json")
	mustWrite(t, nl, append(data, '\n'))
	code, _, errOut = run(t, "manifest", "verify", "--manifest", nl, "--signature", s)
	if code != exitcode.Invalid || !strings.Contains(errOut, "line break") {
		t.Errorf("trailing newline: exit %d %s", code, errOut)
	}
	badSig := filepath.Join(d, "bad.jws")
	b := []byte(strings.TrimSpace(string(sig)))
	b[len(b)-5] ^= 1
	mustWrite(t, badSig, b)
	code, out, _ = run(t, "manifest", "verify", "--manifest", m, "--signature", badSig, "--json")
	v = manifestVerdict{}
	json.Unmarshal([]byte(out), &v)
	if code != exitcode.Invalid || v.OK || v.FailedStep != "signing key signature over the JWS payload" || v.ERC != "A0200004" || v.ExitCode != 1 {
		t.Errorf("changed signature: exit %d %+v", code, v)
	}

	// A twin desired patch carrying both.
	twin, _ := json.Marshal(map[string]any{"deviceUpdate": map[string]any{"__t": "c", "service": map[string]any{
		"workflow": map[string]any{"action": 3, "id": "w"}, "updateManifest": string(data), "updateManifestSignature": strings.TrimSpace(string(sig))}}, "$version": 3})
	tw := filepath.Join(d, "twin.json")
	mustWrite(t, tw, twin)
	if code, out, errOut := run(t, "manifest", "verify", "--twin", tw); code != 0 || !strings.Contains(out, "VERIFIED") {
		t.Errorf("twin: exit %d %s%s", code, out, errOut)
	}
	cancel := filepath.Join(d, "cancel.json")
	mustWrite(t, cancel, []byte(`{"deviceUpdate":{"service":{"workflow":{"action":255,"id":"nodeployment"},"updateManifest":null}},"$version":6}`))
	if code, _, _ := run(t, "manifest", "verify", "--twin", cancel); code != exitcode.Invalid {
		t.Errorf("cancel twin: exit %d", code)
	}

	// Only a bad root-keys file, unreadable files, usage errors.
	junk := filepath.Join(d, "junk.json")
	mustWrite(t, junk, []byte(`{"kid":1}`))
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--manifest", m, "--signature", s, "--root-keys", junk}, exitcode.Invalid},
		{[]string{"--manifest", filepath.Join(d, "missing"), "--signature", s}, exitcode.IO},
		{[]string{"--manifest", m, "--signature", filepath.Join(d, "missing")}, exitcode.IO},
		{[]string{"--manifest", m, "--signature", s, "--root-keys", filepath.Join(d, "missing")}, exitcode.IO},
		{[]string{"--manifest", m}, exitcode.Usage},
		{[]string{"--signature", s}, exitcode.Usage},
		{[]string{"--twin", tw, "--manifest", m}, exitcode.Usage},
		{[]string{"--manifest", m, "--signature", s, "extra"}, exitcode.Usage},
		{[]string{"--no-such-flag"}, exitcode.Usage},
	} {
		if code, _, errOut := run(t, append([]string{"manifest", "verify"}, tc.args...)...); code != tc.code {
			t.Errorf("%q: exit %d, want %d (%s)", tc.args, code, tc.code, errOut)
		}
	}
	if code, _, _ := run(t, "manifest"); code != exitcode.Usage {
		t.Errorf("manifest alone: exit %d", code)
	}
}

// A manifest signed by a trusted root whose manifestVersion the agent does not install: the
// signature verdict is "valid" (exit 0), the installability is shown in text and JSON, and
// --installable makes it a failure.
func TestManifestVerifyNotInstallable(t *testing.T) {
	signer, err := hub.NewSigner(nil, "TEST.R", "TEST.R.S", 2048)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := hub.MarshalRootKeys([]adu.RootKey{signer.RootKey()})
	if err != nil {
		t.Fatal(err)
	}
	manifest := []byte(`{"manifestVersion":"1.0","updateId":{"provider":"Contoso","name":"Legacy","version":"1.0"},"updateType":"microsoft/swupdate:1","installedCriteria":"1.0"}`)
	jws, err := signer.Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	m, s, r := filepath.Join(d, "m.json"), filepath.Join(d, "m.jws"), filepath.Join(d, "roots.json")
	mustWrite(t, m, manifest)
	mustWrite(t, s, []byte(jws))
	mustWrite(t, r, roots)
	args := []string{"manifest", "verify", "--manifest", m, "--signature", s, "--root-keys", r}

	const verdict = "signature valid, not installable by this agent (manifestVersion 1.0; supported 4, 5)"
	code, out, errOut := run(t, args...)
	if code != 0 || !strings.Contains(out, verdict) || !strings.Contains(out, "TEST.R.S") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, append(args, "--json")...)
	var v manifestVerdict
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || !v.OK || !v.SignatureValid || v.Installable ||
		v.NotInstallable != "manifestVersion 1.0; supported 4, 5" || v.ManifestVersion != "1.0" {
		t.Errorf("--json: exit %d %+v %v", code, v, err)
	}
	code, _, errOut = run(t, append(args, "--installable")...)
	if code != exitcode.Invalid || !strings.Contains(errOut, verdict) {
		t.Errorf("--installable: exit %d %s", code, errOut)
	}
	code, out, _ = run(t, append(args, "--installable", "--json")...)
	v = manifestVerdict{}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != exitcode.Invalid || v.OK || !v.SignatureValid || v.Installable {
		t.Errorf("--installable --json: exit %d %+v %v", code, v, err)
	}
	// The real v4 manifest stays installable, with or without the flag.
	code, out, _ = run(t, "manifest", "verify", "--manifest", aduTestdata+"manifest_v4.json", "--signature", aduTestdata+"manifest_v4.sig.jws", "--installable", "--json")
	v = manifestVerdict{}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || !v.SignatureValid || !v.Installable || v.NotInstallable != "" {
		t.Errorf("v4 --installable: exit %d %+v %v", code, v, err)
	}
}
