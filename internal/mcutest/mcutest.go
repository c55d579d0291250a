// Package mcutest has what tests of MCU updates share: an ECDSA P-256 key and MCUboot images
// signed with it (image.Keyring and PEM files included), and a simulated MCU (mcusim) wired
// to an smp.Client through an in-memory serial line.
package mcutest

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/peers"
	"github.com/aduflash/aduflash/smp"
)

// Signer is a signing key and what verifies its images.
type Signer struct {
	Key     crypto.Signer
	Keyring *image.Keyring
}

// NewSigner makes an ECDSA P-256 key (the type MCUboot's serial recovery peer compiles in).
func NewSigner(t testing.TB) *Signer {
	t.Helper()
	k, err := image.GenerateKey(image.ECDSAP256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer(t, k)
}

func signer(t testing.TB, k crypto.Signer) *Signer {
	t.Helper()
	kr, err := image.NewKeyring(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{Key: k, Keyring: kr}
}

// WriteKeys writes the private and public key as PEM files into dir and returns their paths.
func (s *Signer) WriteKeys(t testing.TB, dir string) (priv, pub string) {
	t.Helper()
	kp, err := image.MarshalPrivateKeyPEM(s.Key)
	if err != nil {
		t.Fatal(err)
	}
	pp, err := image.MarshalPublicKeyPEM(s.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "key.pem"), filepath.Join(dir, "key.pub.pem")
	if err := os.WriteFile(priv, kp, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pp, 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// Image signs a payload of size bytes (its content derived from version) as an MCUboot image
// of version (e.g. "1.2.3").
func (s *Signer) Image(t testing.TB, version string, size int) []byte {
	t.Helper()
	v, err := mcuboot.ParseVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, size)
	seed := sha256.Sum256([]byte(version))
	for i := range payload {
		payload[i] = seed[i%len(seed)] ^ byte(i*7)
	}
	img, err := mcuboot.Sign(payload, s.Key, mcuboot.SignOptions{Version: v, HeaderSize: 32, PadHeader: true})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Hash is an image's hash as MCUboot reports it (its SHA256 TLV).
func Hash(t testing.TB, img []byte) []byte {
	t.Helper()
	p, err := mcuboot.Parse(img)
	if err != nil {
		t.Fatal(err)
	}
	if p.Hash() == nil {
		t.Fatal("image without a hash TLV")
	}
	return p.Hash()
}

// Connect serves mcu on one end of an in-memory serial line until the test ends and returns
// a client on the other end.
func Connect(t testing.TB, mcu *mcusim.MCU, so smp.SerialOptions, o smp.Options) *smp.Client {
	t.Helper()
	dev, host := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		mcu.ServeSerial(ctx, dev)
	}()
	c := smp.NewClient(smp.NewSerial(host, so), o)
	t.Cleanup(func() {
		cancel()
		c.Close()
		<-done
	})
	return c
}

// LoadSigner reads a private key PEM file (a peer's compiled-in key).
func LoadSigner(t testing.TB, path string) *Signer {
	t.Helper()
	k, err := image.LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return signer(t, k)
}

// StartBootSerial runs the bs_host peer (MCUboot's serial recovery; peers.BootSerial builds
// it) on a new pty with slot files in dir and the given extra arguments, until the test
// ends, and returns the pty's path.
func StartBootSerial(t testing.TB, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-d", dir}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	peers.Start(t, "bs_host", cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	pty, ok := strings.CutPrefix(strings.TrimSpace(line), "PTY ")
	if err != nil || !ok {
		t.Fatalf("bs_host printed %q (%v), not its pty", line, err)
	}
	return pty
}
