package app

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/image/mcuboot/mcuboottest"
)

// mcubootFixture writes keys and a payload into a temporary directory.
type mcubootFixture struct {
	dir                  string
	key, pub, other, in  string
	ecKey, ecPub         string
	signer               crypto.Signer
	payload              []byte
	goldenKey, goldenDir string
}

// The golden key and images of package image/mcuboot: imgtool 2.4.0's output.
const mcubootGoldenDir = "../../../image/mcuboot/testdata"

func newMcubootFixture(t *testing.T) *mcubootFixture {
	t.Helper()
	f := &mcubootFixture{dir: t.TempDir()}
	write := func(name string, data []byte) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPair := func(name string, k crypto.Signer) (string, string) {
		priv, err := image.MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := image.MarshalPublicKeyPEM(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", priv), write(name+".pub.pem", pub)
	}
	f.signer = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	f.key, f.pub = keyPair("k", f.signer)
	_, f.other = keyPair("other", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)))
	ec, err := image.GenerateKey(image.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.ecKey, f.ecPub = keyPair("ec", ec)
	f.payload = make([]byte, 3000)
	for i := range f.payload {
		f.payload[i] = byte(i*31 + i>>8)
	}
	f.in = write("app.bin", f.payload)
	f.goldenKey = filepath.Join(mcubootGoldenDir, "golden-ed25519.pem")
	f.goldenDir = filepath.Join(mcubootGoldenDir, "golden")
	return f
}

func (f *mcubootFixture) path(name string) string { return filepath.Join(f.dir, name) }

func TestMcubootSignVerifyDump(t *testing.T) {
	f := newMcubootFixture(t)
	out := f.path("app.signed.bin")
	code, stdout, stderr := run(t, "mcuboot", "sign", "-k", f.key, "-v", "1.2.3+4", "-H", "0x200", "--pad-header",
		"-S", "0x10000", "--align", "4", "-s", "auto", "--confirm", f.in, out)
	if code != 0 {
		t.Fatalf("sign: exit %d, stderr %q", code, stderr)
	}
	if want := fmt.Sprintf("%s: version 1.2.3+4, header 0x200, image 0x%x bytes, signed with ed25519, security counter 0x1020003, padded to 0x10000 (confirmed) -> %s (0x10000 bytes)\n",
		f.in, len(f.payload), out); stdout != want {
		t.Errorf("sign output %q, want %q", stdout, want)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The CLI makes what the library makes for the same options.
	sc := uint32(0x01020003)
	want, err := mcuboot.Sign(f.payload, f.signer, mcuboot.SignOptions{Version: mcuboot.Version{Major: 1, Minor: 2, Revision: 3, Build: 4},
		HeaderSize: 0x200, PadHeader: true, SlotSize: 0x10000, Align: 4, SecurityCounter: &sc, Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, want) {
		t.Error("the CLI's image differs from mcuboot.Sign's")
	}

	for _, key := range []string{f.pub, f.key} {
		code, stdout, stderr = run(t, "mcuboot", "verify", "-k", key, out)
		if code != 0 || !strings.Contains(stdout, "Image was correctly validated") || !strings.Contains(stdout, "Image version: 1.2.3+4") ||
			!strings.Contains(stdout, "Image digest: ") {
			t.Errorf("verify -k %s: exit %d, stdout %q, stderr %q", filepath.Base(key), code, stdout, stderr)
		}
	}

	code, stdout, stderr = run(t, "mcuboot", "dump", out)
	if code != 0 {
		t.Fatalf("dump: exit %d, %s", code, stderr)
	}
	for _, s := range []string{"version:            1.2.3+4", "SEC_CNT (0x50)", "SHA256 (0x10)", "KEYHASH (0x1)", "ED25519 (0x24)", "image_ok:   0x01 (set)", "hdr_size:           0x200"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("dump lacks %q:\n%s", s, stdout)
		}
	}
	code, stdout, stderr = run(t, "mcuboot", "dump", "--json", out)
	if code != 0 {
		t.Fatalf("dump --json: exit %d, %s", code, stderr)
	}
	var img struct {
		Header struct {
			Version string `json:"version"`
			HdrSize int    `json:"hdr_size"`
		} `json:"header"`
		TLVArea struct {
			TLVs []struct {
				TypeName string `json:"type_name"`
				Len      int    `json:"len"`
			} `json:"tlvs"`
		} `json:"tlv_area"`
		Trailer *struct {
			ImageOK int `json:"image_ok"`
		} `json:"trailer"`
	}
	if err := json.Unmarshal([]byte(stdout), &img); err != nil {
		t.Fatalf("dump --json: %v\n%s", err, stdout)
	}
	if img.Header.Version != "1.2.3+4" || img.Header.HdrSize != 0x200 || len(img.TLVArea.TLVs) != 3 || img.TLVArea.TLVs[2].TypeName != "ED25519" ||
		img.Trailer == nil || img.Trailer.ImageOK != 1 {
		t.Errorf("dump --json: %+v", img)
	}
}

// The flags are imgtool's: with the same flags, the CLI writes imgtool's bytes (the golden
// images of package image/mcuboot are imgtool 2.4.0's output for its golden key).
func TestMcubootSignMatchesImgtool(t *testing.T) {
	f := newMcubootFixture(t)
	payload := mcuboottest.Payload(1000)
	in := filepath.Join(f.dir, "golden.in")
	if err := os.WriteFile(in, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"basic", []string{"-v", "1.2.3+4", "-H", "0x200", "--pad-header", "-S", "0x10000"}},
		{"confirm-maxalign32", []string{"-v", "3.1.4", "-H", "0x200", "--pad-header", "-S", "0x1000", "-M", "4", "--align", "32", "--max-align", "32", "--confirm"}},
		{"erased0-pad", []string{"-v", "1.0.0", "-H", "0x80", "--pad-header", "-S", "0x1000", "-M", "8", "-R", "0", "--confirm"}},
		{"overwrite-only-confirm", []string{"-v", "1.0.0", "-H", "0x20", "--pad-header", "-S", "0x800", "--overwrite-only", "--confirm"}},
		{"rom-fixed-non-bootable", []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "-F", "0x8020000", "--non-bootable"}},
		{"load-addr", []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "-L", "0x20000000"}},
		{"public-key-full", []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "--public-key-format", "full"}},
		{"sha512", []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "--sha", "512"}},
		{"pure", []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "--pure", "-s", "7"}},
		// imgtool: --custom-tlv 0xa0 0x0102 --custom-tlv 0x1234 "hello, world"
		{"protected-tlvs", []string{"-v", "4.5.6+7", "-H", "0x20", "--pad-header", "-S", "0x10000", "-s", "auto",
			"-d", "(1,2.3.4+5), (2, 1.0)", "--boot-record", "CoFM", "--vid", "example.com", "--cid", "toaster-app",
			"--custom-tlv", "0xa0=0x0102", "--custom-tlv", "0x1234=hello, world"}},
	} {
		t.Run(c.golden, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(f.goldenDir, c.golden+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(f.dir, c.golden+".bin")
			args := append(append([]string{"mcuboot", "sign", "-k", f.goldenKey}, c.args...), in, out)
			code, _, stderr := run(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("aduimport mcuboot sign %s differs from imgtool's output", strings.Join(c.args, " "))
			}
		})
	}
	// --custom-tlv-file reads the value from a file.
	val := filepath.Join(f.dir, "tlv.bin")
	if err := os.WriteFile(val, []byte{1, 2}, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(f.dir, "file-tlv.bin")
	if code, _, stderr := run(t, "mcuboot", "sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000",
		"--custom-tlv-file", "0xa0="+val, in, out); code != 0 {
		t.Fatalf("--custom-tlv-file: exit %d: %s", code, stderr)
	}
	data, _ := os.ReadFile(out)
	img, err := mcuboot.Parse(data)
	if err != nil || img.Protected == nil || !bytes.Equal(img.Protected.Records[0].Data, []byte{1, 2}) {
		t.Errorf("--custom-tlv-file: %v %+v", err, img)
	}
}

func TestMcubootFailures(t *testing.T) {
	f := newMcubootFixture(t)
	good := f.path("good.bin")
	if code, _, stderr := run(t, "mcuboot", "sign", "-k", f.key, "-v", "1.0.0", "-H", "0x20", "--pad-header", "-S", "0x10000", "-s", "3", f.in, good); code != 0 {
		t.Fatalf("sign: exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mcuboot.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := f.path(name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flip := func(off int) []byte {
		c := bytes.Clone(data)
		c[off] ^= 1
		return c
	}
	sig := img.Find(mcuboot.TLVEd25519)
	tamperedBody := write("tampered-body.bin", flip(0x20+10))
	tamperedSig := write("tampered-sig.bin", flip(sig.Offset+8))
	notImage := write("not-image.bin", []byte("this is not an MCUboot image at all, just text"))
	truncated := write("truncated.bin", data[:len(data)-10])
	badKey := write("bad.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	zeroHdr := write("zerohdr.bin", append(make([]byte, 0x20), f.payload...))
	out := f.path("out.bin")

	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		// verify
		{"verify ok", []string{"verify", "-k", f.pub, good}, 0, ""},
		{"verify --key long form", []string{"verify", "--key", f.pub, good}, 0, ""},
		{"wrong key", []string{"verify", "-k", f.other, good}, exitcode.Invalid, "no signature for the given key"},
		{"wrong key type", []string{"verify", "-k", f.ecPub, good}, exitcode.Invalid, "no signature for the given key"},
		{"tampered body", []string{"verify", "-k", f.pub, tamperedBody}, exitcode.Invalid, "image hash mismatch"},
		{"tampered signature", []string{"verify", "-k", f.pub, tamperedSig}, exitcode.Invalid, "bad signature"},
		{"not an image", []string{"verify", "-k", f.pub, notImage}, exitcode.Invalid, "bad magic"},
		{"truncated", []string{"verify", "-k", f.pub, truncated}, exitcode.Invalid, "truncated"},
		{"bad key file", []string{"verify", "-k", badKey, good}, exitcode.Invalid, "bad key"},
		{"missing key file", []string{"verify", "-k", f.path("nope.pem"), good}, exitcode.IO, "nope.pem"},
		{"missing image", []string{"verify", "-k", f.pub, f.path("nope.bin")}, exitcode.IO, "nope.bin"},
		{"verify without key", []string{"verify", good}, exitcode.Usage, "--key"},
		{"verify two files", []string{"verify", "-k", f.pub, good, good}, exitcode.Usage, "FILE"},
		// dump
		{"dump ok", []string{"dump", good}, 0, ""},
		{"dump not an image", []string{"dump", notImage}, exitcode.Invalid, "bad magic"},
		{"dump truncated", []string{"dump", "--json", truncated}, exitcode.Invalid, "truncated"},
		{"dump no file", []string{"dump"}, exitcode.Usage, "FILE"},
		{"dump missing file", []string{"dump", f.path("nope.bin")}, exitcode.IO, "nope.bin"},
		// sign
		{"sign unsigned", []string{"sign", "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", f.in, out}, 0, ""},
		{"sign zero header", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "-S", "0x10000", zeroHdr, out}, 0, ""},
		{"sign ecdsa", []string{"sign", "-k", f.ecKey, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--pad-sig", f.in, out}, 0, ""},
		{"too large", []string{"sign", "-k", f.key, "-v", "1", "-H", "0x200", "--pad-header", "-S", "0xe00", f.in, out}, exitcode.Invalid,
			"image size (0xe48) + trailer (0x1b0) exceeds requested size 0xe00"},
		{"header not zero", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "-S", "0x10000", f.in, out}, exitcode.Invalid, "does not start with zeros"},
		{"bad signing key", []string{"sign", "-k", badKey, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", f.in, out}, exitcode.Invalid, "bad key"},
		{"missing signing key", []string{"sign", "-k", f.path("nope.pem"), "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", f.in, out}, exitcode.IO, "nope.pem"},
		{"missing input", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", f.path("nope.bin"), out}, exitcode.IO, "nope.bin"},
		{"no version", []string{"sign", "-k", f.key, "-H", "32", "--pad-header", "-S", "0x10000", f.in, out}, exitcode.Usage, "--version"},
		{"no header size", []string{"sign", "-k", f.key, "-v", "1", "--pad-header", "-S", "0x10000", f.in, out}, exitcode.Usage, "--header-size"},
		{"no slot size", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", f.in, out}, exitcode.Usage, "--slot-size"},
		{"bad version", []string{"sign", "-k", f.key, "-v", "1.2.3.4", "-H", "32", "--pad-header", "-S", "0x10000", f.in, out}, exitcode.Usage, "version"},
		{"header too small", []string{"sign", "-k", f.key, "-v", "1", "-H", "16", "--pad-header", "-S", "0x10000", f.in, out}, exitcode.Usage, "minimum"},
		{"bad size", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "64k", f.in, out}, exitcode.Usage, "slot-size"},
		{"bad align", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--align", "3", f.in, out}, exitcode.Usage, "align"},
		{"bad max-align", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--max-align", "4", f.in, out}, exitcode.Usage, "max-align"},
		{"bad erased value", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "-R", "1", f.in, out}, exitcode.Usage, "erased-val"},
		{"bad security counter", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "-s", "many", f.in, out}, exitcode.Usage, "security-counter"},
		{"bad key format", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--public-key-format", "pem", f.in, out}, exitcode.Usage, "public-key-format"},
		{"bad sha for key", []string{"sign", "-k", f.ecKey, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--sha", "512", f.in, out}, exitcode.Usage, "SHA-512"},
		{"pure ecdsa", []string{"sign", "-k", f.ecKey, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--pure", f.in, out}, exitcode.Usage, "ed25519"},
		{"load and rom", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "-L", "1", "-F", "2", f.in, out}, exitcode.Usage, "load address"},
		{"bad custom tlv", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--custom-tlv", "0x50=x", f.in, out}, exitcode.Usage, "custom-tlv"},
		{"custom tlv twice", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--custom-tlv", "0xa0=x", "--custom-tlv", "0xa0=y", f.in, out}, exitcode.Usage, "already exists"},
		{"custom tlv file twice", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--custom-tlv", "0xa0=x", "--custom-tlv-file", "0xa1=" + f.in, "--custom-tlv-file", "0xa0=" + f.in, f.in, out},
			exitcode.Usage, "--custom-tlv-file: custom TLV 0xa0 already exists"},
		{"custom tlv file missing", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "--custom-tlv-file", "0xa0=" + f.path("nope.bin"), f.in, out}, exitcode.IO, "nope.bin"},
		{"bad dependencies", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", "-d", "1,2", f.in, out}, exitcode.Usage, "dependencies"},
		{"intel hex", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", f.in, f.path("out.hex")}, exitcode.Usage, "Intel HEX"},
		{"one argument", []string{"sign", "-k", f.key, "-v", "1", "-H", "32", "--pad-header", "-S", "0x10000", f.in}, exitcode.Usage, "INFILE OUTFILE"},
		{"unknown flag", []string{"sign", "--no-such-flag", f.in, out}, exitcode.Usage, ""},
		{"no subcommand", []string{}, exitcode.Usage, "subcommand"},
		{"unknown subcommand", []string{"create"}, exitcode.Usage, "unknown command"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := run(t, append([]string{"mcuboot"}, c.args...)...)
			if code != c.code || !strings.Contains(stderr, c.msg) {
				t.Errorf("aduimport mcuboot %s: exit %d, stderr %q; want exit %d mentioning %q (stdout %q)",
					strings.Join(c.args, " "), code, stderr, c.code, c.msg, stdout)
			}
		})
	}
	// A failed verification names the reason in errors.Is terms too (for callers of the library).
	if _, err := mcuboot.Verify(flip(0x20+10), f.signer.Public()); !errors.Is(err, mcuboot.ErrHashMismatch) {
		t.Errorf("Verify: %v", err)
	}
}
