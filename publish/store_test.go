package publish

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/aduflash/aduflash/internal/azuritetest"
	"github.com/aduflash/aduflash/internal/publishtest"
)

// proxyStore is the container of the development account reached through p.
func proxyStore(t *testing.T, p *azuritetest.Proxy, container string) *Store {
	t.Helper()
	s, err := StoreFromConnectionString(azuritetest.ConnectionString(p.AccountURL), container, nil)
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
	ctx, cancel := context.WithCancel(context.Background())
	proxy := az.Proxy(t, 10, cancel)
	store := proxyStore(t, proxy, "updates")
	const size, blockSize = 3<<20 + 12345, 128 << 10 // 25 blocks
	w := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "rootfs.bin", Size: size, Seed: 7})
	u, err := Check(context.Background(), w.Manifest, w.Files, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := u.Files[0]
	opts := UploadOptions{BlockSize: blockSize, Parallel: 2}

	if _, err := store.Upload(ctx, BlobName(u, f.Name), f, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("cut upload: %v, want context.Canceled", err)
	}
	firstBytes := proxy.BlockBytes()
	if firstBytes < 10*blockSize || firstBytes >= size {
		t.Fatalf("the cut upload staged %d bytes, want from %d to below %d", firstBytes, 10*blockSize, size)
	}

	up, err := store.Upload(context.Background(), BlobName(u, f.Name), f, opts)
	if err != nil {
		t.Fatal(err)
	}
	// A block in flight when the upload was cut may have been staged without the proxy
	// seeing its answer: the second run may find more than firstBytes staged, never less.
	second := proxy.BlockBytes() - firstBytes
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
	proxy := az.Proxy(t, 0, nil)
	store := proxyStore(t, proxy, "updates")
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
	before := proxy.BlockBytes()
	up, err := store.Upload(context.Background(), "x/fw.bin", f, UploadOptions{BlockSize: 64 << 10})
	if err != nil || !up.Existed || up.Sent != 0 || proxy.BlockBytes() != before {
		t.Fatalf("second upload of the same file: %+v, %v; %d block bytes sent", up, err, proxy.BlockBytes()-before)
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
