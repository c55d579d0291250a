package iothub

import (
	"crypto/x509"
	_ "embed"
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
