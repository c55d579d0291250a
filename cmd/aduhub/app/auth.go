package app

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/outfile"
)

// The API token: serve makes it on first use in DIR/api-token (mode 0600); the API wants it as
// "Authorization: Bearer TOKEN"; the web page gets a session cookie for it at /login?token=TOKEN.
const (
	tokenFile     = "api-token"
	tokenEnv      = "ADUHUB_TOKEN"
	sessionCookie = "aduhub_session"
	minTokenLen   = 32
)

var (
	// errNoToken: the client found no API token where it looked.
	errNoToken = errors.New("no API token")
	// errTokenRefused: the server answered 401 to the client's token.
	errTokenRefused = errors.New("API token refused")
)

// loadOrCreateToken returns the token in DIR/api-token, making a new random one if there is
// none. A token file that others may read is refused, as ssh refuses such a key.
func loadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, tokenFile)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 32)
		rand.Read(b)
		tok := base64.RawURLEncoding.EncodeToString(b)
		if err := outfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("API token: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("API token %s is readable by others (mode %04o): chmod 600 it, or delete it for a new token", path, st.Mode().Perm())
	}
	return readToken(path)
}

// readToken reads a token file: one line of at least 32 letters, digits, '-' or '_'.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if err := checkToken(tok); err != nil {
		return "", fmt.Errorf("API token %s: %w", path, err)
	}
	return tok, nil
}

func checkToken(tok string) error {
	if len(tok) < minTokenLen {
		return fmt.Errorf("%d characters, want at least %d", len(tok), minTokenLen)
	}
	for _, c := range tok {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%q is not allowed (letters, digits, - and _ are)", c)
		}
	}
	return nil
}

func tokenFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "token-file", TakesFile: true,
		Usage: "read the API token from `FILE` (default: $" + tokenEnv + ", else the data folder's " + tokenFile + ")"}
}

// clientToken finds the API token a command sends: --token-file, $ADUHUB_TOKEN, or the
// api-token file of the data folder (--data, default ./aduhub-data). It also says where it
// came from, for errors.
func clientToken(c *cli.Context) (tok, from string, err error) {
	if f := c.String("token-file"); f != "" {
		tok, err := readToken(f)
		return tok, f, err
	}
	if tok := os.Getenv(tokenEnv); tok != "" {
		if err := checkToken(tok); err != nil {
			return "", "", fmt.Errorf("$%s: %w", tokenEnv, err)
		}
		return tok, "$" + tokenEnv, nil
	}
	path := filepath.Join(dataDirOf(c), tokenFile)
	tok, err = readToken(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("%w: %s does not exist (aduhub serve makes it in its data folder; give that folder with --data, or --token-file FILE, or $%s)", errNoToken, path, tokenEnv)
	}
	return tok, path, err
}

// dataDirOf is the data folder a client command names (--data, default ./aduhub-data).
func dataDirOf(c *cli.Context) string {
	if d := c.String("data"); d != "" {
		return d
	}
	return DefaultDataDir
}

// auth checks the API token of a request, as a bearer token or as the session cookie that
// /login gives a browser for it.
type auth struct {
	token   []byte
	session string // the cookie's value: HMAC-SHA256(token, "aduhub web session")
}

func newAuth(token string) *auth {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("aduhub web session"))
	return &auth{token: []byte(token), session: base64.RawURLEncoding.EncodeToString(m.Sum(nil))}
}

// How a request authenticated.
type authKind int

const (
	authNone authKind = iota
	authBearer
	authSession
)

func (a *auth) check(r *http.Request) authKind {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") && a.tokenOK(strings.TrimSpace(tok)) {
			return authBearer
		}
		return authNone
	}
	if c, err := r.Cookie(sessionCookie); err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(a.session)) == 1 {
		return authSession
	}
	return authNone
}

func (a *auth) tokenOK(tok string) bool {
	return subtle.ConstantTimeCompare([]byte(tok), a.token) == 1
}

// login serves GET /login?token=TOKEN: the right token gets the session cookie (HttpOnly,
// SameSite=Strict) and a redirect to the page; anything else a 401.
func (a *auth) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !a.tokenOK(r.URL.Query().Get("token")) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintln(w, "aduhub: wrong or missing token. Open the login URL that aduhub serve printed (the token is in the api-token file of its data folder).")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: a.session, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// require lets through only authenticated requests. POST bodies must be application/json
// (so that no cross-site form can post), except the upload of an import
// (multipart/form-data), which needs the bearer token: a browser session cannot upload.
func (a *auth) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		how := a.check(r)
		if how == authNone {
			unauthorized(w, r)
			return
		}
		if r.Method == http.MethodPost {
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			switch {
			case mt == "application/json":
				r.Body = http.MaxBytesReader(w, r.Body, maxAPIBody)
			case mt == "multipart/form-data" && how == authBearer && r.URL.Path == "/api/updates":
			default:
				writeAPIError(w, &httpError{http.StatusUnsupportedMediaType, errors.New("POST bodies must be application/json (an import's upload: multipart/form-data with the bearer token)")})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="aduhub"`)
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeAPI(w, http.StatusUnauthorized, apiError{Error: "missing or wrong API token: send Authorization: Bearer TOKEN, the token in the api-token file of the server's data folder", ExitCode: 3})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprintln(w, "aduhub: this page needs a session. Open the login URL that aduhub serve printed (…/login?token=…; the token is in the api-token file of its data folder).")
}
