package app

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/httpcount"
	"github.com/aduflash/aduflash/internal/publishtest"
	"github.com/aduflash/aduflash/publish"
)

// blobHost is a stand-in blob store: it serves files by path, and counts requests.
type blobHost struct {
	srv      *httptest.Server
	files    httpcount.Files
	redirect map[string]string // path → where to redirect
}

func newBlobHost(t *testing.T) *blobHost {
	b := &blobHost{redirect: map[string]string{}}
	b.files.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		to, ok := b.redirect[r.URL.Path]
		if ok {
			http.Redirect(w, r, to, http.StatusFound)
		}
		return ok
	}
	b.srv = httptest.NewServer(&b.files)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *blobHost) host() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// put serves the update w (its manifest and files, the files as given by data when set)
// and returns the import request for it.
func (b *blobHost) put(t *testing.T, w publishtest.Update, data map[string][]byte) []publish.ImportItem {
	t.Helper()
	manifest, err := os.ReadFile(w.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	b.files.Put("/c/manifest.json", manifest)
	sum := sha256.Sum256(manifest)
	item := publish.ImportItem{ImportManifest: publish.ManifestRef{URL: b.srv.URL + "/c/manifest.json?sig=s", SizeInBytes: int64(len(manifest)),
		Hashes: map[string]string{"sha256": base64.StdEncoding.EncodeToString(sum[:])}}}
	for _, p := range w.Files {
		name := filepath.Base(p)
		file := data[name]
		if file == nil {
			file, _ = os.ReadFile(p)
		}
		b.files.Put("/c/"+name, file)
		item.Files = append(item.Files, publish.FileRef{Filename: name, URL: b.srv.URL + "/c/" + name + "?sig=s"})
	}
	return []publish.ImportItem{item}
}

const aduPath = "/deviceUpdate/aduhub/updates"

// importUpdate POSTs items to updates:import; a 202 is followed to the operation's end.
func (s *hubServe) importUpdate(t *testing.T, items []publish.ImportItem) (int, publish.Operation, publish.ErrorResponse) {
	t.Helper()
	body, _ := json.Marshal(items)
	resp := s.request(t, http.MethodPost, aduPath+":import?api-version="+publish.DefaultAPIVersion, string(body))
	var op publish.Operation
	var er publish.ErrorResponse
	if resp.StatusCode != http.StatusAccepted {
		_ = json.NewDecoder(resp.Body).Decode(&er)
		return resp.StatusCode, op, er
	}
	loc, err := url.Parse(resp.Header.Get("Operation-Location"))
	if err != nil || loc.Host != "" {
		t.Fatalf("Operation-Location %q: want a path on this server", resp.Header.Get("Operation-Location"))
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r := s.request(t, http.MethodGet, loc.String(), "")
		op = publish.Operation{}
		if err := json.NewDecoder(r.Body).Decode(&op); err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("operation: %d, %v", r.StatusCode, err)
		}
		if op.Status == publish.StatusSucceeded || op.Status == publish.StatusFailed {
			return resp.StatusCode, op, er
		}
	}
	t.Fatalf("the operation did not end: %+v", op)
	return 0, op, er
}

// The import API imports an update whose files it fetches from an allowed blob host, shows
// it, and reports the second import of it as UpdateAlreadyExists.
func TestADUImportAPI(t *testing.T) {
	blobs := newBlobHost(t)
	s := startServe(t, t.TempDir(), "--blob-host", blobs.host())
	w := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "a.bin", Data: []byte("payload a")})
	items := blobs.put(t, w, nil)
	items[0].FriendlyName = "Toaster 1.0"
	status, op, _ := s.importUpdate(t, items)
	if status != http.StatusAccepted || op.Status != publish.StatusSucceeded || op.Update == nil || op.Update.FriendlyName != "Toaster 1.0" ||
		!strings.Contains(op.ResourceLocation, "/providers/Contoso/names/Toaster/versions/1.0") {
		t.Fatalf("import: %d %+v", status, op)
	}
	if r := s.request(t, http.MethodGet, aduPath+"/providers/Contoso/names/Toaster/versions/1.0?api-version="+publish.DefaultAPIVersion, ""); r.StatusCode != http.StatusOK {
		t.Fatalf("GET of the update: %d", r.StatusCode)
	}
	if r := s.request(t, http.MethodGet, aduPath+"/providers/Contoso/names/Toaster/versions/9.9?api-version="+publish.DefaultAPIVersion, ""); r.StatusCode != http.StatusNotFound {
		t.Fatalf("GET of an update not imported: %d", r.StatusCode)
	}
	_, op, _ = s.importUpdate(t, items)
	if op.Status != publish.StatusFailed || op.Error == nil || op.Error.Code != "UpdateAlreadyExists" {
		t.Fatalf("second import: %+v", op)
	}
	if r := s.request(t, http.MethodGet, aduPath+"/operations/none?api-version="+publish.DefaultAPIVersion, ""); r.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown operation: %d", r.StatusCode)
	}
	if r := s.request(t, http.MethodGet, aduPath+"/operations/none?api-version=2020-01-01", ""); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("another api-version: %d", r.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, s.info.HTTP+aduPath+"/providers/Contoso/names/Toaster/versions/1.0?api-version="+publish.DefaultAPIVersion, nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %v %v", r.StatusCode, err)
	}
}

// The hub fetches what a client names only from the --blob-host hosts (none by default),
// over http(s), follows no redirect, and reads no more bytes than the manifest gives a
// file: a request naming anything else is refused before the hub sends a request there.
func TestADUImportFetchesOnlyWhatItMay(t *testing.T) {
	blobs, elsewhere := newBlobHost(t), newBlobHost(t)
	s := startServe(t, t.TempDir(), "--blob-host", blobs.host())
	w := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "a.bin", Data: []byte("payload a")})
	other := elsewhere.put(t, w, nil)
	if status, _, er := s.importUpdate(t, other); status != http.StatusBadRequest || !strings.Contains(er.Error.Message, "not one of the blob hosts") {
		t.Errorf("a manifest on another host: %d %+v", status, er)
	}
	items := blobs.put(t, w, nil)
	items[0].Files[0].URL = "ftp://" + blobs.host() + "/c/a.bin"
	if status, _, er := s.importUpdate(t, items); status != http.StatusBadRequest || !strings.Contains(er.Error.Message, "http(s)") {
		t.Errorf("an ftp:// URL on the blob host: %d %+v", status, er)
	}
	items = blobs.put(t, w, nil)
	blobs.redirect["/c/a.bin"] = elsewhere.srv.URL + "/c/a.bin"
	if _, op, _ := s.importUpdate(t, items); op.Status != publish.StatusFailed || op.Error.Code != "CannotDownload" || !strings.Contains(op.Error.Message, "302") {
		t.Errorf("a redirect: %+v", op.Error)
	}
	delete(blobs.redirect, "/c/a.bin")
	items = blobs.put(t, w, map[string][]byte{"a.bin": []byte("payload a and more")})
	if _, op, _ := s.importUpdate(t, items); op.Status != publish.StatusFailed || op.Error.Code != "CannotProcessUpdateFile" ||
		!strings.Contains(op.Error.Message, "more bytes than its sizeInBytes") {
		t.Errorf("a longer file: %+v", op.Error)
	}
	if n := elsewhere.files.Hits.Load(); n != 0 {
		t.Errorf("the hub sent %d request(s) to a host it may not reach", n)
	}
	none := startServe(t, t.TempDir())
	if status, _, er := none.importUpdate(t, blobs.put(t, w, nil)); status != http.StatusBadRequest || !strings.Contains(er.Error.Message, "from no host") {
		t.Errorf("without --blob-host: %d %+v", status, er)
	}
}
