package publish

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
	"testing"

	"github.com/aduflash/aduflash/internal/azuritetest"
	"github.com/aduflash/aduflash/internal/publishtest"
)

// blobProxy stands between Store and Azurite and counts the block bytes that reach
// Azurite (PUT ?comp=block answered 201) and the requests; after cutAfter blocks it calls
// cut (the test cancels the upload there).
type blobProxy struct {
	url        string
	blockBytes atomic.Int64
	blocks     atomic.Int64
	requests   atomic.Int64
	cutAfter   int64
	cut        func()
}

func newBlobProxy(t *testing.T, az *azuritetest.Blob) *blobProxy {
	t.Helper()
	target, _ := url.Parse("http://" + az.Host)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // the cut requests
	p := &blobProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		isBlock := r.Method == http.MethodPut && r.URL.Query().Get("comp") == "block"
		rec := &statusRecorder{ResponseWriter: w}
		rp.ServeHTTP(rec, r)
		if isBlock && rec.status == http.StatusCreated {
			p.blockBytes.Add(r.ContentLength)
			if n := p.blocks.Add(1); n == p.cutAfter && p.cut != nil {
				p.cut()
			}
		}
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL + "/" + azuritetest.Account
	return p
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (p *blobProxy) store(t *testing.T, container string) *Store {
	t.Helper()
	s, err := StoreFromConnectionString(azuritetest.ConnectionString(p.url), container, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// An upload cut after some blocks resumes: the second run sends only the blocks Azurite
// does not have, so no block's bytes reach it twice, and the blob is the file.
func TestUploadResumesACutUpload(t *testing.T) {
	az := azuritetest.Start(t)
	proxy := newBlobProxy(t, az)
	store := proxy.store(t, "updates")
	const size, blockSize = 3<<20 + 12345, 128 << 10 // 25 blocks
	w := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "rootfs.bin", Size: size, Seed: 7})
	u, err := Check(context.Background(), w.Manifest, w.Files, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := u.Files[0]
	opts := UploadOptions{BlockSize: blockSize, Parallel: 2}

	ctx, cancel := context.WithCancel(context.Background())
	proxy.cutAfter, proxy.cut = 10, cancel
	if _, err := store.Upload(ctx, BlobName(u, f.Name), f, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("cut upload: %v, want context.Canceled", err)
	}
	firstBytes := proxy.blockBytes.Load()
	if firstBytes < 10*blockSize || firstBytes >= size {
		t.Fatalf("the cut upload staged %d bytes, want from %d to below %d", firstBytes, 10*blockSize, size)
	}

	up, err := store.Upload(context.Background(), BlobName(u, f.Name), f, opts)
	if err != nil {
		t.Fatal(err)
	}
	// A block in flight when the upload was cut may have been staged without the proxy
	// seeing its answer: the second run may find more than firstBytes staged, never less.
	second := proxy.blockBytes.Load() - firstBytes
	if second != up.Sent || up.Sent > size-firstBytes || up.Resumed < firstBytes || up.Sent+up.Resumed != size || up.Existed {
		t.Errorf("second run: %+v, %d block bytes reached Azurite; want at most %d sent (nothing the first run staged) and the rest resumed",
			up, second, size-firstBytes)
	}
	checkBlob(t, store, BlobName(u, f.Name), f.Path)
}

// A blob that holds the file already is not sent again, and a blob of the same length with
// other bytes is replaced.
func TestUploadSkipsTheSameBlobAndReplacesAnother(t *testing.T) {
	az := azuritetest.Start(t)
	proxy := newBlobProxy(t, az)
	store := proxy.store(t, "updates")
	dir := t.TempDir()
	w := publishtest.Write(t, dir, "1.0", publishtest.Payload{Name: "fw.bin", Size: 300 << 10, Seed: 1})
	u, err := Check(context.Background(), w.Manifest, w.Files, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := u.Files[0]
	if _, err := store.Upload(context.Background(), "x/fw.bin", f, UploadOptions{BlockSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	before := proxy.blockBytes.Load()
	up, err := store.Upload(context.Background(), "x/fw.bin", f, UploadOptions{BlockSize: 64 << 10})
	if err != nil || !up.Existed || up.Sent != 0 || proxy.blockBytes.Load() != before {
		t.Fatalf("second upload of the same file: %+v, %v; %d block bytes sent", up, err, proxy.blockBytes.Load()-before)
	}
	// The same name and length, other bytes (another build): sent again.
	w2 := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "fw.bin", Size: 300 << 10, Seed: 2})
	u2, err := Check(context.Background(), w2.Manifest, w2.Files, nil)
	if err != nil {
		t.Fatal(err)
	}
	up, err = store.Upload(context.Background(), "x/fw.bin", u2.Files[0], UploadOptions{BlockSize: 64 << 10})
	if err != nil || up.Existed || up.Sent != 300<<10 {
		t.Fatalf("upload of other bytes: %+v, %v", up, err)
	}
	checkBlob(t, store, "x/fw.bin", u2.Files[0].Path)
}

// checkBlob downloads the blob name through its read URL (a SAS, as the service reads it)
// and compares it with the file at path.
func checkBlob(t *testing.T, s *Store, name, path string) {
	t.Helper()
	u, err := s.readURL(context.Background(), s.c.NewBlockBlobClient(name))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	want, _ := os.ReadFile(path)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Fatalf("blob %s through its read URL: %s, %d bytes, want the file's %d", name, resp.Status, len(got), len(want))
	}
}
