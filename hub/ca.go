package hub

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names of LoadOrCreateCA in its folder.
const (
	CACertFile     = "ca.pem"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server.key"
)

// LocalCA is a private certificate authority for the stand-in (ECDSA P-256)
// with a server certificate it issued, so devices can use TLS as with IoT
// Hub: give CertPEM to devices (iothub.Config.TLSConfig.RootCAs via
// CertPool, or an agent's ca_file) and ServerTLSConfig to Options.TLSConfig.
type LocalCA struct {
	// CertPEM is the CA certificate in PEM, for devices.
	CertPEM []byte
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// Server is the server certificate (leaf then CA) with its key.
	Server tls.Certificate
	// Hosts are the DNS names and IP addresses Server is valid for.
	Hosts []string

	key *ecdsa.PrivateKey
}

// LoadOrCreateCA loads the CA and server certificate kept in dir (see the
// *File constants; keys are PKCS#8 PEM with mode 0600), creating whatever
// is missing: a CA valid for 10 years, and a server certificate valid for
// one year for hosts (default localhost, 127.0.0.1 and ::1). The server certificate is
// issued again (by the same CA, so devices keep trusting it) when it does not
// cover hosts, expires within 30 days, or was not issued by the CA.
func LoadOrCreateCA(dir string, hosts ...string) (*LocalCA, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("hub: ca: %w", err)
	}
	ca := &LocalCA{Hosts: slices.Clone(hosts)}
	now := time.Now()
	certPEM, keyPEM, err := readPair(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	switch {
	case err == nil:
		if ca.Cert, ca.key, err = parsePair(certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("hub: ca: %s: %w", dir, err)
		}
		if !ca.Cert.IsCA {
			return nil, fmt.Errorf("hub: ca: %s is not a CA certificate", filepath.Join(dir, CACertFile))
		}
		ca.CertPEM = certPEM
	case errors.Is(err, os.ErrNotExist):
		if err := ca.create(dir, now); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("hub: ca: %w", err)
	}

	srvCertPEM, srvKeyPEM, err := readPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	if err == nil {
		leaf, key, perr := parsePair(srvCertPEM, srvKeyPEM)
		if perr == nil && ca.serverOK(leaf, hosts, now) {
			ca.Server = tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}
			return ca, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hub: ca: %w", err)
	}
	if err := ca.issueServer(dir, hosts, now); err != nil {
		return nil, err
	}
	return ca, nil
}

// CertPool is a pool holding only the CA, for a client's RootCAs.
func (ca *LocalCA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerTLSConfig is a TLS configuration for Options.TLSConfig: the server
// certificate, TLS 1.2 or newer, and client certificates requested (not
// required) so that X.509 devices can authenticate while SAS devices need
// none.
func (ca *LocalCA) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.Server},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.RequestClientCert,
	}
}

// ClientTLSConfig is a TLS configuration for devices that trust only this
// CA (for iothub.Config.TLSConfig).
func (ca *LocalCA) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.CertPool(), MinVersion: tls.VersionTLS12}
}

// IssueClientCertificate issues a device certificate with common name
// deviceID, valid for one year, for X.509 devices: register it with
// RegisterDeviceX509(deviceID, Thumbprint(cert.Certificate[0])). It is not
// stored.
func (ca *LocalCA) IssueClientCertificate(deviceID string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("hub: ca: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: deviceID},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("hub: ca: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func (ca *LocalCA) create(dir string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("hub: ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "aduhub local CA", Organization: []string{"aduflash"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("hub: ca: %w", err)
	}
	ca.Cert, _ = x509.ParseCertificate(der)
	ca.key = key
	ca.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return writePair(dir, CACertFile, CAKeyFile, ca.CertPEM, key)
}

func (ca *LocalCA) serverOK(leaf *x509.Certificate, hosts []string, now time.Time) bool {
	if leaf.CheckSignatureFrom(ca.Cert) != nil || now.Add(30*24*time.Hour).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func (ca *LocalCA) issueServer(dir string, hosts []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("hub: ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("hub: ca: server certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writePair(dir, ServerCertFile, ServerKeyFile, certPEM, key); err != nil {
		return err
	}
	ca.Server = tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

func readPair(certPath, keyPath string) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(certPath); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = os.ReadFile(keyPath); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, nil, errors.New("no PKCS#8 PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("private key is not ECDSA")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, errors.New("private key does not match the certificate")
	}
	return cert, key, nil
}

func writePair(dir, certName, keyName string, certPEM []byte, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("hub: ca: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	// Key first: a certificate on disk always has its key.
	if err := writeFileAtomic(filepath.Join(dir, keyName), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, certName), bytes.Clone(certPEM), 0o644)
}
