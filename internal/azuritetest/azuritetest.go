// Package azuritetest runs Azurite, Microsoft's Azure Storage emulator (npm package
// azurite), as a real Blob Storage peer for tests: its blob service alone, on 127.0.0.1 and
// a port of its choosing, keeping its data in a test folder, with telemetry off (it would
// otherwise try to reach the internet). A test without azurite-blob on PATH skips (or fails
// in CI, see internal/peers); scripts/test installs it with npm. Beside it: a proxy that
// counts the block bytes reaching it and can cut an upload, and containers of the
// development account with their SAS and blobs.
package azuritetest

import (
	"bufio"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/aduflash/aduflash/internal/peers"
)

// The well-known development account every Azurite has (public, documented by Microsoft).
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Blob is a running Azurite blob service.
type Blob struct {
	// Host is its host:port; AccountURL the development account's endpoint on it.
	Host       string
	AccountURL string
}

// ConnectionString is the development account's connection string for the blob endpoint
// accountURL (Blob.AccountURL, or a proxy in front of it).
func ConnectionString(accountURL string) string {
	return "DefaultEndpointsProtocol=http;AccountName=" + Account + ";AccountKey=" + Key + ";BlobEndpoint=" + accountURL + ";"
}

var listening = regexp.MustCompile(`successfully listens on (http://(127\.0\.0\.1:\d+))`)

// Start runs azurite-blob for t, stopped when t ends.
func Start(t testing.TB) *Blob {
	t.Helper()
	bin, err := exec.LookPath("azurite-blob")
	if err != nil {
		peers.Missing(t, "azurite-blob (npm install -g azurite): %v", err)
		return nil
	}
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", t.TempDir(),
		"--disableTelemetry", "--skipApiVersionCheck")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("azurite-blob: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var last string
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
				_, _ = io.Copy(io.Discard, out)
				return
			}
			last = sc.Text()
		}
		found <- []string{last}
	}()
	select {
	case m := <-found:
		if len(m) == 1 {
			t.Fatalf("azurite-blob ended before it listened: %s", m[0])
		}
		return &Blob{Host: m[2], AccountURL: m[1] + "/" + Account}
	case <-time.After(60 * time.Second):
		t.Fatal("azurite-blob did not say where it listens within 60 s")
	}
	return nil
}

// Proxy stands between a client and Azurite and counts the bytes of the blocks that reach
// Azurite (Put Block answered 201 Created); after the cutAfter-th block it calls cut (a
// test cancels an upload there).
type Proxy struct {
	// Blob is the Azurite behind it as reached through the proxy.
	Blob
	blockBytes, blocks atomic.Int64
	cutAfter           int64
	cut                func()
}

// Proxy starts a Proxy in front of b for t; cut may be nil.
func (b *Blob) Proxy(t testing.TB, cutAfter int64, cut func()) *Proxy {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: b.Host})
	rp.ErrorLog = log.New(io.Discard, "", 0) // the requests of a cut upload
	p := &Proxy{cutAfter: cutAfter, cut: cut}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	p.AccountURL = srv.URL + "/" + Account
	return p
}

// BlockBytes is the bytes of the blocks that reached Azurite through p so far.
func (p *Proxy) BlockBytes() int64 { return p.blockBytes.Load() }

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Container creates the container name in the development account and returns its client,
// which signs with the account key.
func (b *Blob) Container(t testing.TB, name string) *container.Client {
	t.Helper()
	c, err := container.NewClientFromConnectionString(ConnectionString(b.AccountURL), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(context.Background(), nil); err != nil {
		t.Fatalf("creating container %s in Azurite: %v", name, err)
	}
	return c
}

// SAS returns c's URL with a container SAS of perms, valid for an hour.
func SAS(t testing.TB, c *container.Client, perms sas.ContainerPermissions) string {
	t.Helper()
	u, err := c.GetSASURL(perms, time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Blobs returns the blobs of c whose names start with prefix, by name, with their bytes.
func Blobs(t testing.TB, c *container.Client, prefix string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	pager := c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing %s: %v", c.URL(), err)
		}
		for _, item := range page.Segment.BlobItems {
			resp, err := c.NewBlobClient(*item.Name).DownloadStream(ctx, nil)
			if err != nil {
				t.Fatalf("reading blob %s: %v", *item.Name, err)
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading blob %s: %v", *item.Name, err)
			}
			out[*item.Name] = data
		}
	}
	return out
}
