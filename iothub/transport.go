package iothub

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
)

// Transport opens the byte stream an MQTT session to an Azure IoT endpoint runs on: a TCP
// connection (Dial), TLS over it (unless InsecurePlainTCP) and, with WebSocket, the
// WebSocket upgrade to WebSocketPath. IoT Hub (Client) and the Device Provisioning Service
// (package dps) are reached the same way.
type Transport struct {
	// Address is the "host:port" dialled.
	Address string
	// WebSocket carries MQTT over a WebSocket at wss://{Address}/$iothub/websocket.
	WebSocket bool
	// NoClientCert adds ?iothub-no-client-cert=true to the WebSocket URL, as SAS clients do.
	NoClientCert bool
	// InsecurePlainTCP leaves TLS out (a local emulator only).
	InsecurePlainTCP bool
	// Dial opens the TCP connection. Default: (&net.Dialer{}).DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is used as it is (see CompleteTLSConfig).
	TLSConfig *tls.Config
	// Logger receives debug records. Default: nothing is logged.
	Logger *slog.Logger
}

// Open dials Address and runs TLS and the WebSocket upgrade over the connection, within
// ctx. Errors name the address and the step that failed (dial, TLS handshake, WebSocket
// handshake).
func (t Transport) Open(ctx context.Context) (net.Conn, error) {
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", t.Address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", t.Address, err)
	}
	if !t.InsecurePlainTCP {
		tcfg := t.TLSConfig
		if tcfg == nil {
			tcfg = CompleteTLSConfig(nil, t.Address, t.WebSocket, nil)
		}
		tc := tls.Client(conn, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			peer := t.Address
			if host, _, _ := net.SplitHostPort(peer); host != tcfg.ServerName {
				peer += fmt.Sprintf(" (server name %q)", tcfg.ServerName)
			}
			return nil, fmt.Errorf("TLS handshake with %s: %w", peer, err)
		}
		conn = tc
	}
	if t.WebSocket {
		if conn, err = t.upgradeWebSocket(ctx, conn); err != nil {
			return nil, err
		}
	}
	return conn, nil
}

// CompleteTLSConfig clones base (or starts empty) and completes it for address: RootCAs
// defaults to AzureRootCAs(), ServerName to the host of address, MinVersion to TLS 1.2,
// renegotiation once for WebSocket (an HTTPS front end may ask for a client certificate
// after seeing the request; the Azure SDKs' TLS stacks allow that, Go's does not by
// default), and clientCert (if not nil) is added to Certificates.
func CompleteTLSConfig(base *tls.Config, address string, webSocket bool, clientCert *tls.Certificate) *tls.Config {
	var t *tls.Config
	if base != nil {
		t = base.Clone()
	} else {
		t = &tls.Config{}
	}
	if t.RootCAs == nil {
		t.RootCAs = AzureRootCAs()
	}
	if t.ServerName == "" {
		host, _, _ := net.SplitHostPort(address)
		t.ServerName = host
	}
	if t.MinVersion < tls.VersionTLS12 {
		t.MinVersion = tls.VersionTLS12
	}
	if webSocket && t.Renegotiation == tls.RenegotiateNever {
		t.Renegotiation = tls.RenegotiateOnceAsClient
	}
	if clientCert != nil {
		t.Certificates = append(t.Certificates, *clientCert)
	}
	return t
}
