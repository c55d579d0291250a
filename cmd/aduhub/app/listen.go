package app

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aduflash/aduflash/cmd/internal/outfile"
)

// hostNameFile keeps the host name of the last serve --hostname in the data folder: the
// connection strings handed out name it, so it stays until another --hostname.
const hostNameFile = "hostname"

// hostNameOf returns the IoT Hub host name for the data folder dir: flag if set (and then
// remembered in dir), else the one remembered, else localhost.
func hostNameOf(dir, flag string) (string, error) {
	path := filepath.Join(dir, hostNameFile)
	if flag != "" {
		if err := checkHostName(flag); err != nil {
			return "", err
		}
		if old, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(old)) == flag {
			return flag, nil
		}
		if err := outfile.WriteFile(path, []byte(flag+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("host name: %w", err)
		}
		return flag, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return HostName, nil
	}
	if err != nil {
		return "", fmt.Errorf("host name: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if err := checkHostName(name); err != nil {
		return "", fmt.Errorf("host name in %s: %w", path, err)
	}
	return name, nil
}

// checkHostName accepts an IP address or a DNS name (labels of letters, digits and '-', 1 to
// 63 characters, not starting or ending with '-'; 253 characters at most).
func checkHostName(h string) error {
	if ip := net.ParseIP(h); ip != nil {
		return nil
	}
	if h == "" || len(h) > 253 {
		return fmt.Errorf("host name %q: 1 to 253 characters", h)
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("host name %q: not a DNS name or an IP address", h)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("host name %q: %q is not allowed in a DNS name", h, c)
			}
		}
	}
	return nil
}

// withoutDefaultPort returns u without its scheme's default port (http://h:80/x → http://h/x):
// clients that take everything between // and / for the host name would dial "h:80".
func withoutDefaultPort(u *url.URL) *url.URL {
	c := *u
	if p := u.Port(); u.Scheme == "http" && p == "80" || u.Scheme == "https" && p == "443" {
		c.Host = strings.TrimSuffix(u.Host, ":"+p)
	}
	return &c
}

// limitListener accepts at most max connections from one IP address at a time; more are
// closed at once.
type limitListener struct {
	net.Listener
	max int
	log *slog.Logger

	mu   sync.Mutex
	open map[string]int
}

func newLimitListener(ln net.Listener, max int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: max, log: log, open: map[string]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := c.RemoteAddr().String()
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip = ta.IP.String()
		}
		l.mu.Lock()
		full := l.open[ip] >= l.max
		if !full {
			l.open[ip]++
		}
		l.mu.Unlock()
		if full {
			l.log.Debug("HTTP connection refused: too many from one client", "client", ip, "max", l.max)
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.done(ip) }}, nil
	}
}

func (l *limitListener) done(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
