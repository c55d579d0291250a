package hub

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/aduflash/aduflash/adu"
)

// File names of LoadOrCreateSigner in its folder.
const (
	SignerFile        = "signer.json" // {"rootKid":…,"signingKid":…}
	RootKeyFile       = "root.key"    // PKCS#8 PEM, 0600
	SigningKeyFile    = "signing.key" // PKCS#8 PEM, 0600
	RootKeysJSONFile  = "rootkeys.json"
	signerStoreFormat = 1
)

type signerFile struct {
	Format     int    `json:"format"`
	RootKID    string `json:"rootKid"`
	SigningKID string `json:"signingKid"`
}

// LoadOrCreateSigner loads the Signer kept in dir, or creates one with
// NewSigner(random, rootKID, signingKID, bits) and stores it there, so that
// devices trusting its root keep verifying manifests after a restart. When
// the Signer is loaded, the kids and bits given are ignored. dir also gets
// RootKeysJSONFile: the public root key in the format of MarshalRootKeys,
// for devices (an agent's extra trusted roots).
func LoadOrCreateSigner(dir string, random io.Reader, rootKID, signingKID string, bits int) (*Signer, error) {
	b, err := os.ReadFile(filepath.Join(dir, SignerFile))
	if err == nil {
		var sf signerFile
		if err := json.Unmarshal(b, &sf); err != nil {
			return nil, fmt.Errorf("hub: signer store: %s: %w", SignerFile, err)
		}
		root, err := readRSAKey(filepath.Join(dir, RootKeyFile))
		if err != nil {
			return nil, err
		}
		signing, err := readRSAKey(filepath.Join(dir, SigningKeyFile))
		if err != nil {
			return nil, err
		}
		return NewSignerFromKeys(root, sf.RootKID, signing, sf.SigningKID)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("hub: signer store: %w", err)
	}
	s, err := NewSigner(random, rootKID, signingKID, bits)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("hub: signer store: %w", err)
	}
	if err := writeRSAKey(filepath.Join(dir, RootKeyFile), s.root); err != nil {
		return nil, err
	}
	if err := writeRSAKey(filepath.Join(dir, SigningKeyFile), s.signing); err != nil {
		return nil, err
	}
	rk, err := MarshalRootKeys([]adu.RootKey{s.RootKey()})
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, RootKeysJSONFile), rk, 0o644); err != nil {
		return nil, err
	}
	// signer.json last: it marks a complete store.
	sf, _ := json.Marshal(signerFile{Format: signerStoreFormat, RootKID: rootKID, SigningKID: signingKID})
	if err := writeFileAtomic(filepath.Join(dir, SignerFile), append(sf, '\n'), 0o600); err != nil {
		return nil, err
	}
	return s, nil
}

func readRSAKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hub: signer store: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("hub: signer store: %s: no PKCS#8 PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("hub: signer store: %s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("hub: signer store: %s: not an RSA key", path)
	}
	return rk, nil
}

func writeRSAKey(path string, k *rsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("hub: signer store: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
