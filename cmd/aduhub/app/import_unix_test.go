//go:build unix

package app

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
)

// upload posts a hand-made upload: the manifest part, then (name, bytes) file parts.
func (s *hubServe) upload(t *testing.T, manifest []byte, files ...string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if manifest != nil {
		w, _ := mw.CreateFormField(uploadManifestPart)
		w.Write(manifest)
	}
	for i := 0; i+1 < len(files); i += 2 {
		w, _ := mw.CreateFormFile(uploadFilePart, files[i])
		w.Write([]byte(files[i+1]))
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.info.HTTP+"/api/updates", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+s.token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ae apiError
	if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
		return resp.StatusCode, ae.Error
	}
	return resp.StatusCode, string(b)
}

// Uploads: the files must be the manifest's, no larger than it says; nothing stays behind.
func TestImportUpload(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "hub", uploadsDir, "import-1", "0") // left by a serve that ended abruptly
	os.MkdirAll(filepath.Dir(stale), 0o700)
	mustWriteFile(t, stale, []byte("half an upload"))
	s := startServe(t, filepath.Join(dir, "hub"))
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("a stale upload stays: %v", err)
	}
	m1, img1 := signedUpdate(t, dir, "1.0")
	manifest, _ := os.ReadFile(m1)
	img, _ := os.ReadFile(img1)
	name := filepath.Base(img1)

	for _, c := range []struct {
		manifest []byte
		files    []string
		status   int
		msg      string
	}{
		{nil, []string{name, string(img)}, 400, `the first part is "file", want "importManifest"`},
		{[]byte("\x00\x01 not json"), nil, 400, "the import manifest is not JSON"},
		{manifest, []string{"other.bin", "x"}, 400, `"other.bin" is not in the import manifest`},
		{manifest, []string{name, string(img) + "x"}, 400, "more bytes than its sizeInBytes in the import manifest, " + itoa(len(img))},
		{manifest, []string{name, string(img), name, string(img)}, 400, "uploaded twice"},
		{manifest, nil, 400, "is missing"},
		{manifest, []string{name, string(img[:len(img)-1]) + "x"}, 400, "hash does not match"},
	} {
		status, body := s.upload(t, c.manifest, c.files...)
		if status != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%.20q %d files: %d %s, want %d %q", c.manifest, len(c.files)/2, status, body, c.status, c.msg)
		}
	}
	if status, body := s.upload(t, manifest, name, string(img)); status != http.StatusCreated {
		t.Fatalf("upload: %d %s", status, body)
	}
	if left, _ := os.ReadDir(filepath.Join(s.dir, uploadsDir)); len(left) != 0 {
		t.Fatalf("uploads left behind: %v", left)
	}

	// The CLI checks the manifest and the files before it sends a byte.
	big := filepath.Join(dir, "big.bin")
	mustWriteFile(t, big, bytes.Repeat([]byte{0xfe}, maxAPIBody+1))
	m2, img2 := signedUpdate(t, dir, "2.0")
	short := filepath.Join(dir, "short", filepath.Base(img2))
	os.Mkdir(filepath.Dir(short), 0o700)
	mustWriteFile(t, short, []byte("short"))
	s.wantFail(t, exitcode.Invalid, "not JSON", "import", "--manifest", img2, img2) // the image for the manifest
	s.wantFail(t, exitcode.Invalid, "so not an import manifest", "import", "--manifest", big, img2)
	s.wantFail(t, exitcode.Invalid, "is 5 bytes, the import manifest says", "import", "--manifest", m2, short)
	s.wantFail(t, exitcode.Invalid, `"rootfs-2.0.aduimg" is missing`, "import", "--manifest", m2, img1)
	s.wantFail(t, exitcode.Usage, "not a regular file", "import", "--manifest", m2, "/dev/null")
	s.wantFail(t, exitcode.Usage, "two files named", "import", "--manifest", m2, img2, short)
	s.mustCLI(t, nil, "import", "--manifest", m2, img2)

	// A wrong case in deploy gets a suggestion.
	s.wantFail(t, exitcode.Invalid, "did you mean Contoso/Toaster/2.0?", "deploy", "--update", "contoso/toaster/2.0")
	s.wantFail(t, exitcode.Invalid, "unknown update", "deploy", "--update", "Contoso/Toaster/9.0")

	// Without an import folder, a request naming files is refused.
	s.wantFail(t, exitcode.Invalid, "no import folder", "import", "--from-import-dir", "--manifest", m2, "rootfs-2.0.aduimg")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// serve --import-dir: requests may name regular files inside it, nothing else.
func TestImportFromImportDir(t *testing.T) {
	dir := t.TempDir()
	imports := filepath.Join(dir, "imports")
	os.MkdirAll(filepath.Join(imports, "releases"), 0o700)
	m1, img1 := signedUpdate(t, filepath.Join(imports, "releases"), "1.0")
	s := startServe(t, filepath.Join(dir, "hub"), "--import-dir", imports)
	if !strings.Contains(s.out.String(), "import folder:  "+imports) {
		t.Fatalf("serve does not name the import folder:\n%s", s.out.String())
	}

	outside := filepath.Join(dir, "rootfs-1.0.aduimg")
	b, _ := os.ReadFile(img1)
	mustWriteFile(t, outside, b) // the right bytes, outside the folder
	os.Symlink(outside, filepath.Join(imports, "link-out"))
	os.MkdirAll(filepath.Join(imports, "fifo"), 0o700)
	if err := syscall.Mkfifo(filepath.Join(imports, "fifo", "rootfs-1.0.aduimg"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, msg := range map[string]string{
		"../rootfs-1.0.aduimg":    "not a path inside the import folder",
		outside:                   "not a path inside the import folder",
		"link-out":                "escapes",
		"fifo/rootfs-1.0.aduimg":  "not a regular file",
		"nope/rootfs-1.0.aduimg":  "no such file",
		filepath.Join(s.dir, "x"): "not a path inside the import folder",
	} {
		// The file name is the path's last element; link-out needs the manifest's name.
		req := importRequest{ImportManifest: mustRead(t, m1), Files: map[string]string{"rootfs-1.0.aduimg": path}}
		body, _ := json.Marshal(req)
		resp := s.request(t, http.MethodPost, "/api/updates", string(body))
		var rb apiError
		json.NewDecoder(resp.Body).Decode(&rb)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(rb.Error, msg) {
			t.Errorf("%s: %d %s, want %q", path, resp.StatusCode, rb.Error, msg)
		}
	}
	var u hub.Update
	s.mustCLI(t, &u, "import", "--json", "--from-import-dir", "--manifest", m1, "releases/rootfs-1.0.aduimg")
	if u.UpdateID.Version != "1.0" || len(u.Files) != 1 {
		t.Fatalf("%+v", u)
	}

	// The import folder may neither hold the data folder nor lie in it.
	for _, d := range []string{dir, s.dir, filepath.Join(s.dir, "files")} {
		if code, _, e := runHub(t, "serve", "--data", s.dir, "--import-dir", d); code != exitcode.Usage || !strings.Contains(e, "data folder") {
			t.Errorf("--import-dir %s: %d %q", d, code, e)
		}
	}
}
