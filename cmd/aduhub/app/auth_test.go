package app

import (
	"bytes"
	"crypto/rand"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
)

// Every API route and the web page need the token (bearer or the session cookie of /login);
// the update files and the login do not.
func TestAPIToken(t *testing.T) {
	s := startServe(t, filepath.Join(t.TempDir(), "hub"))
	tok := s.token(t)
	if st, err := os.Stat(s.tokenFile()); err != nil || st.Mode().Perm() != 0o600 || len(tok) < minTokenLen {
		t.Fatalf("token file: %v %v, %d characters", st.Mode(), err, len(tok))
	}
	if !strings.Contains(s.out.String(), s.info.HTTP+"/login?token="+tok) {
		t.Fatalf("serve does not print the login URL:\n%s", s.out.String())
	}

	routes := []struct{ method, path, body string }{
		{"GET", "/api/info", ""}, {"GET", "/api/devices", ""}, {"POST", "/api/devices", `{"deviceId":"x"}`},
		{"POST", "/api/devices/x/renew-key", `{}`}, {"DELETE", "/api/devices/x", ""}, {"GET", "/api/updates", ""},
		{"POST", "/api/updates", `{}`}, {"GET", "/api/deployments", ""}, {"POST", "/api/deployments", `{}`},
		{"GET", "/api/deployments/x", ""}, {"POST", "/api/deployments/x/cancel", `{}`}, {"POST", "/api/deployments/x/retry", `{}`},
		{"GET", "/", ""}, {"GET", "/nosuch", ""},
	}
	wrong := []func(*http.Request){
		func(*http.Request) {},
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok[:len(tok)-1]+"x") },
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer") },
		func(r *http.Request) { r.Header.Set("Authorization", "Basic "+tok) },
		func(r *http.Request) { r.AddCookie(&http.Cookie{Name: sessionCookie, Value: tok}) },
		func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: sessionCookie, Value: newAuth(tok + "x").session})
		},
	}
	for _, rt := range routes {
		for i, set := range wrong {
			req, _ := http.NewRequest(rt.method, s.info.HTTP+rt.path, strings.NewReader(rt.body))
			req.Header.Set("Content-Type", "application/json")
			set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with credentials #%d: %d", rt.method, rt.path, i, resp.StatusCode)
			}
		}
	}
	if ids := listDevices(t, s); len(ids) != 0 {
		t.Fatalf("devices %v registered without the token", ids)
	}
	for _, rt := range routes {
		if resp := s.request(t, rt.method, rt.path, rt.body); resp.StatusCode == http.StatusUnauthorized {
			t.Errorf("%s %s with the token: 401", rt.method, rt.path)
		}
	}
	// Files are public (their URLs are unguessable), as the service's CDN URLs are.
	if resp, err := http.Get(s.info.HTTP + "/files/f0123/x.bin"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("files without a token: %v %v", resp.StatusCode, err)
	}

	// The login: a wrong token gets nothing; the right one a strict, HTTP-only session.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, q := range []string{"", "?token=", "?token=" + tok + "x"} {
		resp, err := noRedirect.Get(s.info.HTTP + "/login" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
			t.Fatalf("login%s: %d %v", q, resp.StatusCode, resp.Cookies())
		}
	}
	resp, err := noRedirect.Get(s.info.HTTP + "/login?token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || len(cs) != 1 ||
		cs[0].Name != sessionCookie || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" || cs[0].Value == tok {
		t.Fatalf("login: %d %q %+v", resp.StatusCode, resp.Header.Get("Location"), cs)
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("the login URL holds the token: Referrer-Policy %q", resp.Header.Get("Referrer-Policy"))
	}

	// With the session: the page and the API (JSON posts only; no upload).
	b := s.browser(t)
	resp, err = b.Get(s.info.HTTP + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("page with the session: %d %v", resp.StatusCode, resp.Header)
	}
	for _, p := range []struct {
		ct   string
		want int
	}{{"application/json", http.StatusCreated}, {"text/plain", http.StatusUnsupportedMediaType}, {"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType}} {
		resp, err := b.Post(s.info.HTTP+"/api/devices", p.ct, strings.NewReader(`{"deviceId":"web"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != p.want {
			t.Fatalf("session post %s: %d, want %d", p.ct, resp.StatusCode, p.want)
		}
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField(uploadManifestPart, "{}")
	mw.Close()
	if resp, err = b.Post(s.info.HTTP+"/api/updates", mw.FormDataContentType(), &body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("an upload with the session: %d", resp.StatusCode)
	}

	// The CLI: the token of another server, none, and $ADUHUB_TOKEN.
	other := filepath.Join(t.TempDir(), "token")
	mustWriteFile(t, other, []byte(strings.Repeat("a", minTokenLen)))
	for _, args := range [][]string{
		{"status", "--server", s.info.HTTP, "--token-file", other},
		{"device", "add", "--server", s.info.HTTP, "--token-file", other, "d"},
		{"import", "--server", s.info.HTTP, "--token-file", other, "--manifest", other, other},
	} {
		code, _, e := runHub(t, args...)
		if args[0] == "import" {
			// The manifest is checked first.
			if code != exitcode.Invalid {
				t.Fatalf("%v: %d %q", args, code, e)
			}
			continue
		}
		if code != exitcode.IO || !strings.Contains(e, "API token refused") || !strings.Contains(e, "the token from "+other) {
			t.Fatalf("%v: %d %q", args, code, e)
		}
	}
	// An upload with another server's token is refused before its bytes are sent.
	k, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 4<<20)
	rand.Read(raw)
	m, img := procSignedUpdate(t, t.TempDir(), "5.0", raw, k)
	if code, _, e := runHub(t, "import", "--server", s.info.HTTP, "--token-file", other, "--manifest", m, img); code != exitcode.IO || !strings.Contains(e, "API token refused") || !strings.Contains(e, "the token from "+other) {
		t.Fatalf("upload with another token: %d %q", code, e)
	}
	if code, _, e := runHub(t, "status", "--server", s.info.HTTP, "--data", t.TempDir()); code != exitcode.IO || !strings.Contains(e, "no API token") {
		t.Fatalf("no token: %d %q", code, e)
	}
	t.Setenv(tokenEnv, tok)
	if code, _, e := runHub(t, "status", "--server", s.info.HTTP, "--data", t.TempDir()); code != 0 {
		t.Fatalf("$%s: %d %q", tokenEnv, code, e)
	}
	t.Setenv(tokenEnv, "short")
	if code, _, e := runHub(t, "status", "--server", s.info.HTTP); code != exitcode.IO || !strings.Contains(e, "$"+tokenEnv) {
		t.Fatalf("bad $%s: %d %q", tokenEnv, code, e)
	}
	t.Setenv(tokenEnv, "")
	// --data alone finds the server (serve.json) and its token.
	if code, _, e := runHub(t, "status", "--data", s.dir); code != 0 {
		t.Fatalf("status --data: %d %q", code, e)
	}

	// A token file changed under the server does not let a second serve or an offline
	// command open the folder.
	mustWriteFile(t, s.tokenFile(), []byte(strings.Repeat("b", minTokenLen)))
	if code, _, e := runHubFor(t, 5*time.Second, "serve", "--data", s.dir, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"); code != exitcode.IO || !strings.Contains(e, "already served") {
		t.Fatalf("second serve after the token changed: %d %q", code, e)
	}
	if code, _, e := runHub(t, "device", "add", "--data", s.dir, "offline"); code != exitcode.IO || !strings.Contains(e, "API token refused") {
		t.Fatalf("device add --data after the token changed: %d %q", code, e)
	}
	os.Remove(s.tokenFile())
	if code, _, e := runHub(t, "device", "remove", "--data", s.dir, "x"); code != exitcode.IO || !strings.Contains(e, "is served by aduhub") {
		t.Fatalf("device remove --data without the token: %d %q", code, e)
	}
	mustWriteFile(t, s.tokenFile(), []byte(tok+"\n"))
	os.Chmod(s.tokenFile(), 0o600)

	// The token stays across restarts; a token file others can read is refused.
	s.stop(t)
	if s2 := startServe(t, s.dir); s2.token(t) != tok {
		t.Fatal("the token changed on restart")
	} else {
		s2.stop(t)
	}
	os.Chmod(s.tokenFile(), 0o644)
	if code, _, e := runHub(t, "serve", "--data", s.dir, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"); code != exitcode.IO || !strings.Contains(e, "readable by others") {
		t.Fatalf("serve with a 0644 token: %d %q", code, e)
	}
}

// The session cookie is not the token, and a session made for another token is refused.
func TestAuthCheck(t *testing.T) {
	a := newAuth(strings.Repeat("k", minTokenLen))
	req := func(h, cookie string) *http.Request {
		r, _ := http.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		}
		return r
	}
	for _, c := range []struct {
		r    *http.Request
		want authKind
	}{
		{req("Bearer "+string(a.token), ""), authBearer},
		{req("bearer  "+string(a.token), ""), authBearer},
		{req("", a.session), authSession},
		{req("Bearer x", a.session), authNone}, // a wrong header is not saved by a cookie
		{req("", string(a.token)), authNone},
		{req("", ""), authNone},
	} {
		if got := a.check(c.r); got != c.want {
			t.Errorf("%v %v: %v, want %v", c.r.Header, c.r.Cookies(), got, c.want)
		}
	}
	// Refused token files and values.
	dir := t.TempDir()
	for _, bad := range []string{"", "short", strings.Repeat("a", 40) + " b", strings.Repeat("é", 40)} {
		p := filepath.Join(dir, "t")
		mustWriteFile(t, p, []byte(bad))
		if _, err := readToken(p); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
}

// FuzzAuthCheck: any Authorization and Cookie header is refused unless it carries the token
// (bearer) or the session; none panics.
func FuzzAuthCheck(f *testing.F) {
	a := newAuth(strings.Repeat("k", minTokenLen))
	f.Fuzz(func(t *testing.T, header, cookie string) {
		r, _ := http.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{header}
		r.Header["Cookie"] = []string{cookie}
		if header == "" {
			delete(r.Header, "Authorization")
		}
		switch a.check(r) {
		case authBearer:
			if !strings.Contains(header, string(a.token)) {
				t.Fatalf("bearer without the token: %q", header)
			}
		case authSession:
			if header != "" || !strings.Contains(cookie, a.session) {
				t.Fatalf("session without the cookie: %q %q", header, cookie)
			}
		}
	})
}
