package app

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/image"
)

func (e *env) keygenCommand() *cli.Command {
	types := make([]string, len(image.KeyTypes))
	for i, t := range image.KeyTypes {
		types[i] = string(t)
	}
	return &cli.Command{
		Name:  "keygen",
		Usage: "generate a signing key (PEM, usable by imgtool too) and its public half",
		Description: `Writes the private key (PKCS#8 PEM, mode 0600) to the -o file and the public key
(SubjectPublicKeyInfo PEM) beside it, with ".pem" replaced by ".pub.pem". Both files
are the formats imgtool reads and writes, so one key signs aduimg and MCUboot images.
The key id printed is the one images and keyrings refer to.

EXAMPLE:
   aduimport keygen --type ecdsa-p256 -o keys/release.pem`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "type", Aliases: []string{"t"}, Value: string(image.Ed25519), Usage: "key type: " + strings.Join(types, ", ")},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "private key file to write (KEY.pem); the public key goes to KEY.pub.pem", TakesFile: true},
			&cli.BoolFlag{Name: "force", Usage: "overwrite existing key files"},
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			if err := need(c, "output"); err != nil {
				return err
			}
			t, err := image.ParseKeyType(c.String("type"))
			if err != nil {
				return exitcode.WithCode(exitcode.Usage, err)
			}
			priv := c.String("output")
			pub := PublicKeyPath(priv)
			if !c.Bool("force") {
				// Check both before writing either, so that a refusal leaves no half pair.
				for _, p := range []string{priv, pub} {
					if _, err := os.Lstat(p); err == nil {
						return fmt.Errorf("%s: %w (use --force to replace it)", p, os.ErrExist)
					}
				}
			}
			k, err := image.GenerateKey(t, nil)
			if err != nil {
				return err
			}
			privPEM, err := image.MarshalPrivateKeyPEM(k)
			if err != nil {
				return err
			}
			pubPEM, err := image.MarshalPublicKeyPEM(k.Public())
			if err != nil {
				return err
			}
			if err := outfile.WriteFile(priv, privPEM, 0o600); err != nil {
				return err
			}
			if err := outfile.WriteFile(pub, pubPEM, 0o644); err != nil {
				return err
			}
			id, err := image.KeyIDOf(k.Public())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s key written to %s (public key: %s, key id %s)\n", t, priv, pub, id)
			return nil
		},
	}
}

// PublicKeyPath returns where keygen writes the public half of the private key file priv:
// KEY.pem → KEY.pub.pem, anything else → NAME.pub.pem.
func PublicKeyPath(priv string) string {
	return strings.TrimSuffix(priv, ".pem") + ".pub.pem"
}
