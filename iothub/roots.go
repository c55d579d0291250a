package iothub

import (
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"fmt"
	"os"
)

// azureRootsPEM holds the public root certificates IoT Hub server chains use:
// DigiCert Global Root G2, Baltimore CyberTrust Root, Microsoft RSA Root
// Certificate Authority 2017 and Microsoft ECC Root Certificate Authority
// 2017, copied from Debian's ca-certificates package.
//
//go:embed azure_roots.pem
var azureRootsPEM []byte

// AzureRootCAs returns a new pool holding the built-in IoT Hub root CAs.
func AzureRootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(azureRootsPEM)
	return p
}

// AzureRootsPEM returns a copy of the built-in root certificates as PEM.
func AzureRootsPEM() []byte { return append([]byte(nil), azureRootsPEM...) }

// LoadCAFile reads a PEM bundle of trusted CA certificates, for instance
// an IoT Edge gateway's root or a TLS-inspecting proxy's, into a new pool
// to put in Config.TLSConfig.RootCAs (which then replaces the built-in
// roots; add AzureRootsPEM() to the file to trust both). PEM blocks other
// than CERTIFICATE are skipped. Errors wrap ErrInvalidConfig, name the file
// and, for an unreadable file, wrap the os error (e.g. fs.ErrNotExist).
func LoadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file: %w", ErrInvalidConfig, err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		n++
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file %s: certificate %d: %w", ErrInvalidConfig, path, n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: CA file %s: no PEM CERTIFICATE block", ErrInvalidConfig, path)
	}
	return pool, nil
}
