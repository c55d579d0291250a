package hub

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzFetcherCheck: a URL the Fetcher lets through is http(s), has no user name, and names
// one of its hosts (the port defaulting to the scheme's); anything else is refused without a
// panic.
func FuzzFetcherCheck(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:10000/devstoreaccount1/c/b?sig=x", "https://acct.blob.core.windows.net/c/b",
		"ftp://127.0.0.1:10000/x", "http://user@127.0.0.1:10000/", "http://127.0.0.1:10001/", "file:///etc/passwd", "http://[::1]:10000/", "%zz"} {
		f.Add(s)
	}
	fe := &Fetcher{Hosts: []string{"127.0.0.1:10000", "acct.blob.core.windows.net", "[::1]:10000"}}
	f.Fuzz(func(t *testing.T, raw string) {
		if fe.Check(raw) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil {
			t.Fatalf("%q allowed: %v", raw, err)
		}
		for _, h := range fe.Hosts {
			if strings.EqualFold(hostPort(u), withPort(h, u.Scheme)) {
				return
			}
		}
		t.Fatalf("%q allowed, host %q is none of %q", raw, hostPort(u), fe.Hosts)
	})
}
