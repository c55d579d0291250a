package iothub

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// maxProxyResponse bounds what is read of a proxy's answer to CONNECT (status line and
// headers): a proxy is a peer like any other.
const maxProxyResponse = 16 << 10

// ProxyDial returns a Dial function (Config.Dial, Transport.Dial) that reaches each address
// through the HTTP proxy at proxy ("http://[user:password@]host:port") with an HTTP CONNECT
// tunnel, opening the connection to the proxy with next (default net.Dialer). TLS and the
// WebSocket upgrade then run inside the tunnel, end to end. Errors wrap ErrConnect's
// causes: the proxy unreachable, or its refusal with its status line.
func ProxyDial(proxy *url.URL, next func(ctx context.Context, network, addr string) (net.Conn, error)) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	if proxy == nil || proxy.Scheme != "http" || proxy.Host == "" {
		return nil, fmt.Errorf("%w: proxy %q: want http://host:port", ErrInvalidConfig, redacted(proxy))
	}
	if next == nil {
		next = (&net.Dialer{}).DialContext
	}
	hostPort := proxy.Host
	if proxy.Port() == "" {
		hostPort = net.JoinHostPort(proxy.Hostname(), "80")
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, hostPort)
		if err != nil {
			return nil, fmt.Errorf("proxy %s: %w", hostPort, err)
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
			defer func() { _ = conn.SetDeadline(time.Time{}) }()
		}
		tunnel, err := connect(conn, proxy, addr)
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("proxy %s: CONNECT %s: %w", hostPort, addr, err)
		}
		return tunnel, nil
	}, nil
}

// connect asks the proxy on conn for a tunnel to addr and returns the tunnel.
func connect(conn net.Conn, proxy *url.URL, addr string) (net.Conn, error) {
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if u := proxy.User; u != nil {
		pw, _ := u.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)) + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return nil, err
	}
	br := bufio.NewReader(io.LimitReader(conn, maxProxyResponse))
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, fmt.Errorf("reading the proxy's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("refused: HTTP %s", resp.Status)
	}
	if n := br.Buffered(); n > 0 { // bytes of the tunnel read with the answer
		pre, _ := br.Peek(n)
		return &prefixConn{Conn: conn, pre: append([]byte(nil), pre...)}, nil
	}
	return conn, nil
}

// prefixConn returns pre before reading on from Conn.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// redacted is the proxy URL without its password, for messages.
func redacted(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Redacted()
}
