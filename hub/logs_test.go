package hub

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The log store takes Put Blob with its container's token only, and only plain names.
func TestLogStore(t *testing.T) {
	s, err := NewLogStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	sas, err := s.SASURL(srv.URL, "logs")
	if err != nil {
		t.Fatal(err)
	}
	base, token, _ := strings.Cut(sas, "?")
	put := func(url, blobType, body string) int {
		req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
		req.Header.Set("x-ms-blob-type", blobType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		url, blobType string
		want          int
	}{
		{base + "/dev/op/a.log?" + token, "BlockBlob", http.StatusCreated},
		{base + "/dev/op/b.log?" + strings.Replace(token, "sig=", "sig=x", 1), "BlockBlob", http.StatusForbidden},
		{base + "/dev/op/c.log", "BlockBlob", http.StatusForbidden},
		{srv.URL + "/other/dev/d.log?" + token, "BlockBlob", http.StatusForbidden},
		{base + "/dev/op/e.log?" + token, "AppendBlob", http.StatusBadRequest},
		{base + "/dev/%2e%2e/f.log?" + token, "BlockBlob", http.StatusBadRequest},
		{base + "/dev/.hidden?" + token, "BlockBlob", http.StatusBadRequest},
	} {
		if got := put(tc.url, tc.blobType, "x"); got != tc.want {
			t.Errorf("PUT %s (%s): %d, want %d", tc.url, tc.blobType, got, tc.want)
		}
	}
	blobs, err := s.Blobs("logs", "")
	if err != nil || len(blobs) != 1 || blobs[0].Name != "dev/op/a.log" || blobs[0].Size != 1 {
		t.Errorf("blobs %+v %v", blobs, err)
	}
	if b, err := s.ReadBlob("logs", "dev/op/a.log"); err != nil || string(b) != "x" {
		t.Errorf("read %q %v", b, err)
	}
}
