package publish

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// A bearer token crosses no network in the clear: http:// only to a loopback address.
func TestNewServiceRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	cred := staticToken("t")
	for _, ok := range []string{"https://contoso.api.adu.microsoft.com", "http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:1"} {
		if _, err := NewService(ok, "i", cred, nil); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://contoso.api.adu.microsoft.com", "http://10.0.0.1:8080", "ftp://127.0.0.1", "https://x/path", "https://x?q=1", "contoso"} {
		if _, err := NewService(bad, "i", cred, nil); !errors.Is(err, ErrEndpoint) {
			t.Errorf("%s: %v, want ErrEndpoint", bad, err)
		}
	}
}

// Operation-Locations resolve against the endpoint and stay on its scheme and host.
func TestServiceLocation(t *testing.T) {
	s, err := NewService("https://contoso.api.adu.microsoft.com", "i", staticToken("t"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.location("/deviceUpdate/i/updates/operations/1?api-version=x"); err != nil || got != "https://contoso.api.adu.microsoft.com/deviceUpdate/i/updates/operations/1?api-version=x" {
		t.Errorf("relative: %q, %v", got, err)
	}
	for _, bad := range []string{"", "https://evil.example/op", "http://contoso.api.adu.microsoft.com/op", "//evil.example/op"} {
		if _, err := s.location(bad); !errors.Is(err, ErrForeignLocation) {
			t.Errorf("%q: %v, want ErrForeignLocation", bad, err)
		}
	}
}

func TestTokenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	for _, c := range []struct{ data, want string }{
		{"eyJ0eXAi.abc.def\n", "eyJ0eXAi.abc.def"}, {"", ""}, {"\n", ""}, {"two\nlines", ""}, {"a b", ""},
	} {
		if err := os.WriteFile(p, []byte(c.data), 0o600); err != nil {
			t.Fatal(err)
		}
		cred, err := TokenFile(p)
		if c.want == "" {
			if !errors.Is(err, ErrTokenFile) {
				t.Errorf("%q: %v, want ErrTokenFile", c.data, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if tok, _ := cred.GetToken(t.Context(), policyOptions()); tok.Token != c.want {
			t.Errorf("%q: token %q", c.data, tok.Token)
		}
	}
}

func policyOptions() policy.TokenRequestOptions {
	return policy.TokenRequestOptions{Scopes: []string{Scope}}
}
