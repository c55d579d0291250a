package app

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/testpayload"
)

// signed makes a key pair and a signed image of a 3.5-chunk payload in a temp dir.
func signed(t *testing.T, extra ...string) (dir, priv, pub, img, payload string) {
	t.Helper()
	dir = t.TempDir()
	priv = filepath.Join(dir, "k.pem")
	pub = filepath.Join(dir, "k.pub.pem")
	payload = filepath.Join(dir, "rootfs.img")
	img = filepath.Join(dir, "rootfs.aduimg")
	if code, _, e := run(t, "keygen", "-t", "ecdsa-p256", "-o", priv); code != 0 {
		t.Fatalf("keygen: %d %s", code, e)
	}
	f, err := os.Create(payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, testpayload.New(3, 3*65536+1000)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := append([]string{"sign", "--key", priv, "--version", "2.1.0", "--slot-class", "rootfs",
		"--chunk-size", "64KiB", "--compat", "manufacturer=contoso,model=toaster", "--meta", "build=42",
		"--security-counter", "7", "-o", img}, extra...)
	args = append(args, payload)
	if code, _, e := run(t, args...); code != 0 {
		t.Fatalf("sign: exit %d: %s", code, e)
	}
	return
}

func TestSignVerifyInspect(t *testing.T) {
	for _, comp := range []string{"zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			dir, _, pub, img, payload := signed(t, "--compress", comp)
			code, out, e := run(t, "verify", "--pub", pub, img)
			if code != 0 || !strings.Contains(out, "valid") {
				t.Fatalf("verify: exit %d, %q %q", code, out, e)
			}
			// The verified payload is the input, byte for byte.
			kr, _ := image.LoadTrust("", []string{pub})
			f, _ := os.Open(img)
			defer f.Close()
			r, err := image.NewReader(f, image.VerifyOptions{Keyring: kr})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(payload)
			if string(got) != string(want) {
				t.Fatal("payload read back differs from the signed input")
			}
			h := r.Header()
			if h.Version != "2.1.0" || h.SlotClass != "rootfs" || h.SecurityCounter != 7 || h.ChunkSize != 65536 ||
				h.Compatibility["model"] != "toaster" || h.Compatibility["manufacturer"] != "contoso" || h.Meta["build"] != "42" ||
				h.Compression.String() != comp || len(h.Chunks) != 4 {
				t.Errorf("header does not carry the flags: %+v", h)
			}

			code, out, _ = run(t, "inspect", "--json", img)
			if code != 0 {
				t.Fatalf("inspect: exit %d", code)
			}
			var js struct {
				Format  string `json:"format"`
				Version string `json:"version"`
				Chunks  []any  `json:"chunks"`
			}
			if err := json.Unmarshal([]byte(out), &js); err != nil {
				t.Fatalf("inspect --json: %v\n%s", err, out)
			}
			if js.Format != "aduimg" || js.Version != "2.1.0" || len(js.Chunks) != 4 {
				t.Errorf("inspect --json: %+v", js)
			}
			code, out, _ = run(t, "inspect", "--chunks", img)
			if code != 0 || !strings.Contains(out, "not checked") || strings.Count(out, "\n") < 14 {
				t.Errorf("inspect text: exit %d\n%s", code, out)
			}
			_ = dir
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	dir, _, pub, img, _ := signed(t)
	good, _ := os.ReadFile(img)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-10] ^= 0x40
	other := filepath.Join(dir, "other.pem")
	if code, _, _ := run(t, "keygen", "-o", other); code != 0 {
		t.Fatal("keygen")
	}
	id := func() string {
		p, _ := image.LoadPublicKey(pub)
		i, _ := image.KeyIDOf(p)
		return i.String()
	}()
	keyring := write("keyring.toml", []byte("revoked = [\""+id+"\"]\n\n[[key]]\nfile = \"k.pub.pem\"\n"))
	trusting := write("trusting.toml", []byte("[[key]]\nname = \"release\"\nfile = \"k.pub.pem\"\n"))
	misplaced := write("misplaced.toml", []byte("[[key]]\nfile = \"k.pub.pem\"\nrevoked = [\""+id+"\"]\n"))

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"tampered frame", []string{"--pub", pub, write("t.aduimg", flipped)}, exitcode.Invalid, "chunk 3"},
		{"truncated", []string{"--pub", pub, write("short.aduimg", good[:len(good)-1])}, exitcode.Invalid, "truncated"},
		{"trailing", []string{"--pub", pub, write("long.aduimg", append(append([]byte(nil), good...), 0))}, exitcode.Invalid, "trailing"},
		{"wrong key", []string{"--pub", filepath.Join(dir, "other.pub.pem"), img}, exitcode.Invalid, "not in the keyring"},
		{"revoked", []string{"--keyring", keyring, img}, exitcode.Invalid, "is revoked by the keyring"},
		{"keyring with misplaced revoked", []string{"--keyring", misplaced, img}, exitcode.Invalid, "put it before the first [[key]]"},
		{"too large for target", []string{"--pub", pub, "--max-size", "64KiB", img}, exitcode.Invalid, "large"},
		{"not an image", []string{"--pub", pub, pub}, exitcode.Invalid, "magic"},
		{"missing file", []string{"--pub", pub, filepath.Join(dir, "nope")}, exitcode.IO, "no such file"},
		{"no trust", []string{img}, exitcode.Usage, "--pub"},
		{"bad max-size", []string{"--pub", pub, "--max-size", "lots", img}, exitcode.Usage, "max-size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, e := run(t, append([]string{"verify"}, c.args...)...)
			if code != c.code || !strings.Contains(e, c.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, e, c.code, c.msg)
			}
			if strings.Contains(e, "verify: done") {
				t.Errorf("the progress claims done for a refused image: %q", e)
			}
		})
	}
	if code, out, e := run(t, "verify", "--keyring", trusting, img); code != 0 || !strings.Contains(out, `"release"`) || !strings.Contains(e, "verify: done") {
		t.Errorf("verify with a keyring that trusts the key: exit %d, %q %q", code, out, e)
	}
	// --json reports the verdict on stdout, and still exits 1.
	code, out, e := run(t, "verify", "--json", "--pub", pub, filepath.Join(dir, "t.aduimg"))
	var v struct {
		Valid bool   `json:"valid"`
		Error string `json:"error"`
	}
	if code != exitcode.Invalid || json.Unmarshal([]byte(out), &v) != nil || v.Valid || v.Error == "" || e != "" {
		t.Errorf("verify --json on a bad image: exit %d, stdout %q, stderr %q", code, out, e)
	}
}

func TestSignErrors(t *testing.T) {
	dir, priv, _, _, payload := signed(t)
	out := filepath.Join(dir, "x.aduimg")
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"no key", []string{"sign", "--version", "1.0", "-o", out, payload}, exitcode.Usage},
		{"no version", []string{"sign", "--key", priv, "-o", out, payload}, exitcode.Usage},
		{"no output", []string{"sign", "--key", priv, "--version", "1.0", payload}, exitcode.Usage},
		{"bad compression", []string{"sign", "--key", priv, "--version", "1.0", "--compress", "lz4", "-o", out, payload}, exitcode.Usage},
		{"bad chunk size", []string{"sign", "--key", priv, "--version", "1.0", "--chunk-size", "-1", "-o", out, payload}, exitcode.Usage},
		{"bad compat", []string{"sign", "--key", priv, "--version", "1.0", "--compat", "novalue", "-o", out, payload}, exitcode.Usage},
		{"key is not a key", []string{"sign", "--key", payload, "--version", "1.0", "-o", out, payload}, exitcode.Invalid},
		{"missing payload", []string{"sign", "--key", priv, "--version", "1.0", "-o", out, filepath.Join(dir, "nope")}, exitcode.IO},
		{"payload is a directory", []string{"sign", "--key", priv, "--version", "1.0", "-o", out, dir}, exitcode.IO},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, e := run(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d (%s), want %d", code, e, c.code)
			}
			if c.name == "no version" && e != "aduimport sign: missing --version\n" {
				t.Errorf("stderr %q, want the program named once", e)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a failed sign left an output file")
			}
			left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
			if len(left) > 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

// SOURCE_DATE_EPOCH makes images and manifests reproducible: with an ed25519 key (deterministic
// signatures) signing twice gives the same bytes.
func TestSourceDateEpoch(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "k.pem")
	if code, _, e := run(t, "keygen", "-o", priv); code != 0 {
		t.Fatal(e)
	}
	payload := filepath.Join(dir, "p")
	if err := os.WriteFile(payload, []byte("payload bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	var imgs [2][]byte
	for i := range imgs {
		out := filepath.Join(dir, "o.aduimg")
		if code, _, e := run(t, "sign", "--key", priv, "--version", "1.0", "-o", out, payload); code != 0 {
			t.Fatal(e)
		}
		imgs[i], _ = os.ReadFile(out)
	}
	if string(imgs[0]) != string(imgs[1]) {
		t.Fatal("two signs with the same SOURCE_DATE_EPOCH differ")
	}
	_, out, _ := run(t, "inspect", filepath.Join(dir, "o.aduimg"))
	if !strings.Contains(out, "2023-11-14T22:13:20Z") {
		t.Errorf("created time is not SOURCE_DATE_EPOCH:\n%s", out)
	}
	_, out, _ = run(t, "manifest", "create", "--provider", "P", "--name", "N", "--version", "1.0",
		"--compat", "m=x", "--step", "handler=a/b:1", "--file", payload, "-o", "-")
	if !strings.Contains(out, `"createdDateTime": "2023-11-14T22:13:20Z"`) {
		t.Errorf("manifest createdDateTime is not SOURCE_DATE_EPOCH:\n%s", out)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if code, _, _ := run(t, "sign", "--key", priv, "--version", "1.0", "-o", filepath.Join(dir, "x"), payload); code != exitcode.Usage {
		t.Errorf("bad SOURCE_DATE_EPOCH: exit %d, want %d", code, exitcode.Usage)
	}
}
